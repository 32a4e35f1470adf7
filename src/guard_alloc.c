/* guard_alloc.c - guarded malloc for the reading child of jt_h5_isolated (guard_alloc.h).
 *
 * Layout of a guarded block inside one reserved stretch of address space:
 *   [header 48 B][user block, n bytes][canary up to the page end][guard page, PROT_NONE]
 * The header sits right before the user pointer (magic, size, its region), and live blocks are
 * linked so jt_guard_check can walk them. A freed region of up to POOL_PAGES pages is kept for
 * the next block of the same number of pages (HDF5 allocates and frees thousands of small
 * blocks while it opens a file; a fresh mapping each time costs ~30 us apiece), and up to
 * BIG_KEEP larger ones for any block that fits (placed at the region's end, before its guard
 * page), so a use after free is not caught, only writes past the end. Invariants: outside guard mode every call goes
 * to glibc unchanged; in guard mode a pointer inside the reserved stretch is ours, any other
 * came from glibc before the switch and goes back to glibc. */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS, MAP_NORESERVE */
#include "guard_alloc.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define GUARD_OFF 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define GUARD_OFF 1
#endif
#endif

#ifdef GUARD_OFF

int jt_guard_enable(void) { return -1; }
void jt_guard_check(void) {}

#else

void *__libc_malloc(size_t n);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t n);
void __libc_free(void *p);
void *__libc_memalign(size_t align, size_t n);
void *__libc_valloc(size_t n);
void *__libc_pvalloc(size_t n);
size_t malloc_usable_size(void *p);

#define GUARD_RESERVE ((size_t)64 << 30) /* address space only (PROT_NONE, not committed) */
#define GUARD_MAGIC 0x6a7467756172642aULL
#define CANARY 0xa5
#define POOL_PAGES 32 /* freed regions up to this many pages are reused by exact size */
#define BIG_KEEP 32   /* larger freed regions kept for reuse (HDF5 decodes chunk after chunk
                         into buffers of the same size: fresh pages would fault every time) */

typedef struct guard_hdr {
    uint64_t magic;
    size_t size;                   /* bytes asked for */
    char *region;                  /* first byte of the block's readable pages */
    size_t region_len;             /* readable bytes (whole pages) */
    struct guard_hdr *prev, *next; /* live blocks */
} guard_hdr;

static int g_on = 0;
static char *g_base, *g_next, *g_end;
static size_t g_page;
static guard_hdr *g_live;
static char *g_pool[POOL_PAGES + 1]; /* freed regions by pages; their first word links them */
static char *g_big[BIG_KEEP];        /* larger freed regions, and their lengths */
static size_t g_big_len[BIG_KEEP];

static int ours(const void *p) {
    return g_on && (const char *)p >= g_base && (const char *)p < g_end;
}

static guard_hdr *hdr_of(void *p) { return (guard_hdr *)((char *)p - sizeof(guard_hdr)); }

/* The block's header and canary are intact, else abort(): the reading child dies by SIGABRT and
 * the parent reports the file. */
static void verify(const guard_hdr *h) {
    if (h->magic != GUARD_MAGIC) abort();
    const unsigned char *c = (const unsigned char *)(h + 1) + h->size;
    const unsigned char *end = (const unsigned char *)h->region + h->region_len;
    for (; c < end; c++)
        if (*c != CANARY) abort();
}

/* A guarded block of n bytes aligned to align (zeroed if zero), or NULL (then glibc's). */
static void *guard_alloc(size_t n, size_t align, int zero) {
    if (align < 16) align = 16;
    size_t usz = (n + 15) & ~(size_t)15;
    if (usz < n || usz > GUARD_RESERVE / 2 || align > GUARD_RESERVE / 4) return NULL;
    size_t need = usz + sizeof(guard_hdr) + align;
    size_t len = (need + g_page - 1) / g_page * g_page, pages = len / g_page;
    char *region;
    int best = -1;
    if (pages > POOL_PAGES)
        for (int i = 0; i < BIG_KEEP; i++)
            if (g_big[i] && g_big_len[i] >= len && (best < 0 || g_big_len[i] < g_big_len[best]))
                best = i;
    if (pages <= POOL_PAGES && g_pool[pages]) {
        region = g_pool[pages];
        memcpy(&g_pool[pages], region, sizeof(char *));
    } else if (best >= 0) { /* the block goes at its end: the guard page follows */
        region = g_big[best];
        len = g_big_len[best];
        g_big[best] = NULL;
    } else {
        if ((size_t)(g_end - g_next) < len + g_page) return NULL;
        region = g_next;
        if (mmap(region, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
                 -1, 0) == MAP_FAILED)
            return NULL; /* e.g. the limit on mappings */
        g_next += len + g_page; /* the page after it stays PROT_NONE: the guard */
        zero = 0;               /* fresh pages are zero */
    }
    uintptr_t user = ((uintptr_t)region + len - usz) & ~(uintptr_t)(align - 1);
    guard_hdr *h = (guard_hdr *)(user - sizeof(guard_hdr));
    h->magic = GUARD_MAGIC;
    h->size = n;
    h->region = region;
    h->region_len = len;
    h->prev = NULL;
    h->next = g_live;
    if (g_live) g_live->prev = h;
    g_live = h;
    if (zero) memset((void *)user, 0, n);
    memset((char *)user + n, CANARY, (size_t)(region + len - ((char *)user + n)));
    return (void *)user;
}

static void guard_free(void *p) {
    guard_hdr *h = hdr_of(p);
    verify(h);
    if (h->prev) h->prev->next = h->next;
    else g_live = h->next;
    if (h->next) h->next->prev = h->prev;
    h->magic = 0; /* a second free aborts */
    size_t pages = h->region_len / g_page;
    if (pages <= POOL_PAGES) {
        memcpy(h->region, &g_pool[pages], sizeof(char *));
        g_pool[pages] = h->region;
        return;
    }
    for (int i = 0; i < BIG_KEEP; i++)
        if (!g_big[i]) {
            g_big[i] = h->region;
            g_big_len[i] = h->region_len;
            return;
        }
    /* no room to keep it: its memory goes back, and it becomes inaccessible */
    mmap(h->region, h->region_len, PROT_NONE,
         MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
}

int jt_guard_enable(void) {
    long page = sysconf(_SC_PAGESIZE);
    g_page = page > 0 ? (size_t)page : 4096;
    void *base = mmap(NULL, GUARD_RESERVE, PROT_NONE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) return -1;
    g_base = g_next = base;
    g_end = g_base + GUARD_RESERVE;
    g_live = NULL;
    memset(g_pool, 0, sizeof g_pool);
    memset(g_big, 0, sizeof g_big);
    g_on = 1;
    return 0;
}

void jt_guard_check(void) {
    for (const guard_hdr *h = g_live; h; h = h->next) verify(h);
}

void *malloc(size_t n) {
    if (g_on) {
        void *p = guard_alloc(n, 16, 0);
        if (p) return p;
    }
    return __libc_malloc(n);
}

void free(void *p) {
    if (!p) return;
    if (ours(p)) guard_free(p);
    else __libc_free(p);
}

void *calloc(size_t n, size_t size) {
    if (g_on) {
        if (size && n > SIZE_MAX / size) {
            errno = ENOMEM;
            return NULL;
        }
        void *p = guard_alloc(n * size, 16, 1);
        if (p) return p;
    }
    return __libc_calloc(n, size);
}

void *realloc(void *p, size_t n) {
    if (!g_on) return __libc_realloc(p, n);
    if (!p) return malloc(n);
    if (n == 0) {
        free(p);
        return NULL;
    }
    size_t old = ours(p) ? hdr_of(p)->size : malloc_usable_size(p);
    void *q = malloc(n);
    if (!q) return NULL;
    memcpy(q, p, old < n ? old : n);
    free(p);
    return q;
}

void *reallocarray(void *p, size_t n, size_t size) {
    if (size && n > SIZE_MAX / size) {
        errno = ENOMEM;
        return NULL;
    }
    return realloc(p, n * size);
}

void *memalign(size_t align, size_t n) {
    if (g_on && align && (align & (align - 1)) == 0) {
        void *p = guard_alloc(n, align, 0);
        if (p) return p;
    }
    return __libc_memalign(align, n);
}

void *aligned_alloc(size_t align, size_t n) { return memalign(align, n); }

int posix_memalign(void **out, size_t align, size_t n) {
    if (align < sizeof(void *) || (align & (align - 1)) != 0) return EINVAL;
    void *p = memalign(align, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}

void *valloc(size_t n) { return g_on ? memalign(g_page, n) : __libc_valloc(n); }

void *pvalloc(size_t n) { return g_on ? memalign(g_page, n) : __libc_pvalloc(n); }

#endif
