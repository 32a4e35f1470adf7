/* guard_alloc.h - private to h5isolate.c: a guard-page allocator for the reading child of
 * jt_h5_isolated.
 *
 * A crafted HDF5 file does not always crash libhdf5: some bugs (H5HG_read copying a global heap
 * object larger than its buffer) only write past the end of a heap block. A child that survived
 * such a write could send back a result computed from corrupted memory. So the child switches
 * malloc to this allocator first: every block ends at a page boundary followed by an
 * inaccessible page, so a write (or read) past its end is a SIGSEGV at once; the bytes between
 * the block's end and the page boundary (alignment slack) are a canary checked on free and by
 * jt_guard_check. Freed regions are reused for later blocks (guard_alloc.c says how).
 *
 * jtrain defines malloc, free, calloc, realloc and the aligned variants (glibc's documented way
 * to replace malloc); until jt_guard_enable they forward to glibc (__libc_malloc, ...), so the
 * cost outside the child is one predictable branch per call. Builds with AddressSanitizer keep
 * the sanitizer's allocator (jt_guard_enable is then a no-op). */
#ifndef JTRAIN_GUARD_ALLOC_H
#define JTRAIN_GUARD_ALLOC_H

/* Switches this process's allocations to guarded blocks (only in a single-threaded child that
 * will end with _exit: memory from before stays valid and is freed by glibc). 0, or -1 if the
 * address space for it cannot be reserved (allocation stays with glibc). */
int jt_guard_enable(void);
/* Checks the canary of every live guarded block; abort()s if one was overwritten. */
void jt_guard_check(void);

#endif
