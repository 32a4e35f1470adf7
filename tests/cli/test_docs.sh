#!/usr/bin/env bash
# The documentation (docs/) against the code, mechanically: (a) nothing refers to the old design
# and style files any more; (b) every path and link the docs name exists (markdown anchors
# included), and every "docs/X.md" (and "Section" of it) a comment names exists; (c) every
# config key of src/config_schema.c's key lists (and every word of its word lists) is in
# docs/config.md; (d) every exit code of include/jtrain/common.h's jt_status is in docs/cli.md's
# exit-code table; (e) every subcommand and option of `jtrain --help` is in docs/cli.md. Each
# failure names what is missing; all are listed before the test fails.
source "$(dirname "$0")/../testlib.sh"
cd "$JT_SRC"
problems=0
miss() { echo "MISSING: $*" >&2; problems=$((problems + 1)); }
[ -d docs ] || fail "no docs/ folder"

# (a) the old design and style files are gone; nothing may point at them (names built here so
# this file does not match itself).
for old in "DES""IGN.md" "STY""LE.md"; do
  hits=$(grep -rnF "$old" src include tests scripts datasets README.md CMakeLists.txt docs || true)
  [ -z "$hits" ] || miss "references to $old (point them at docs/):"$'\n'"$hits"
done

# GitHub's anchor of a heading: lower case, punctuation but - and _ dropped, spaces -> '-'.
slug() { tr 'A-Z' 'a-z' <<<"$1" | sed -e 's/[^a-z0-9 _-]//g' -e 's/ /-/g'; }
anchors() { grep -E '^#+ ' "$1" | sed -E 's/^#+ +//' | while IFS= read -r h; do slug "$h"; done; }

# (b) paths and links in the docs.
for doc in docs/*.md; do
  # markdown links [text](target): relative to the document's folder
  while IFS= read -r target; do
    case "$target" in http://*|https://*|mailto:*) continue ;; esac
    file="${target%%#*}" anchor=""
    [[ "$target" == *"#"* ]] && anchor="${target#*#}"
    if [ -z "$file" ]; then path="$doc"; else path="docs/$file"; fi
    if [ ! -e "$path" ]; then miss "$doc: link ($target): no file $path"; continue; fi
    if [ -n "$anchor" ] && [[ "$path" == *.md ]] && ! grep -qxF -- "$anchor" <<<"$(anchors "$path")"; then
      miss "$doc: link ($target): no heading with anchor #$anchor in $path"
    fi
  done < <(grep -oE '\]\([^)]+\)' "$doc" | sed -E 's/^\]\((.*)\)$/\1/')
  # repository paths in backticks: relative to the repository's root (globs allowed)
  while IFS= read -r p; do
    p="${p%%:*}"
    compgen -G "$p" >/dev/null || miss "$doc: \`$p\` names no file of the repository"
  done < <(grep -oE '`(src|include|tests|scripts|datasets|docs)/[A-Za-z0-9_./*+-]*`|`(README\.md|CMakeLists\.txt)`' "$doc" | tr -d '`')
done
# comments that point at a document must point at one that exists
while IFS= read -r hit; do
  f="${hit#*:}"; f="${f#*:}"
  while IFS= read -r d; do
    [ -e "$d" ] || miss "${hit%%:*}: points at $d, which does not exist"
  done < <(grep -oE 'docs/[a-z-]+\.md' <<<"$f")
done < <(grep -rnE 'docs/[a-z-]+\.md' src include tests scripts datasets README.md CMakeLists.txt || true)
# ... and a section they quote (docs/X.md "Title") must be a heading of it
while IFS= read -r hit; do
  d="${hit%% \"*}" title="${hit#* \"}"; title="${title%\"}"
  headings=$(grep -E '^#+ ' "$d" 2>/dev/null | sed -E 's/^#+ +//' || true)
  grep -qxF -- "$title" <<<"$headings" ||
    miss "a comment quotes section \"$title\" of $d, which has no such heading"
done < <(grep -rhoE 'docs/[a-z-]+\.md "[^"]+"' src include tests scripts datasets README.md CMakeLists.txt | sort -u || true)

# (c) config keys: each key list k_* of the schema, with the dotted prefix of its section.
declare -A prefix=(
  [k_root]="" [k_data]="data." [k_model]="model." [k_block]="model.blocks.NAME."
  [k_head]="model.heads.NAME." [k_train]="train." [k_optim]="train.optimizer."
  [k_sched]="train.schedule." [k_balance]="train.balance." [k_early]="train.early_stop."
  [k_ckpt]="checkpoint." [k_best]="checkpoint.best." [k_log]="log."
)
schema=src/config_schema.c
# "name word word ..." per static const char *const [kw]_...[] = {...}; (lists span lines)
lists=$(tr '\n' ' ' < "$schema" | grep -oE 'static const char \*const [kw]_[a-z]+\[\] = \{[^}]*\}' |
        sed -E 's/static const char \*const ([kw]_[a-z]+)\[\] = \{(.*)\}/\1 \2/' |
        sed -E 's/"//g; s/,/ /g; s/NULL//g; s/ +/ /g')
[ -n "$lists" ] || fail "no key lists found in $schema (did its format change?)"
nkeys=0
while read -r name words; do
  for w in $words; do
    if [[ "$name" == k_* ]]; then
      if [ -z "${prefix[$name]+set}" ]; then
        miss "$schema: key list $name is new: document its keys in docs/config.md and give it a prefix in tests/cli/test_docs.sh"
        break
      fi
      key="${prefix[$name]}$w"
      [ "$name" = k_root ] && { grep -qE "^#+ $w\$" docs/config.md || miss "docs/config.md: no section '### $w'"; continue; }
      grep -qF "\`$key\`" docs/config.md || miss "docs/config.md: config key \`$key\` ($name in $schema)"
      nkeys=$((nkeys + 1))
    else
      grep -qF "\`$w\`" docs/config.md || miss "docs/config.md: value \`$w\` ($name in $schema)"
    fi
  done
done <<<"$lists"
[ "$nkeys" -ge 40 ] || fail "only $nkeys config keys extracted from $schema: the extraction is broken"

# (d) exit codes: every value of jt_status is a row "| CODE |" of docs/cli.md.
codes=$(sed -n '/typedef enum {/,/} jt_status;/p' include/jtrain/common.h | grep -oE 'JT_[A-Z]+ = [0-9]+')
[ -n "$codes" ] || fail "no jt_status values found in include/jtrain/common.h"
while read -r name _ code; do
  grep -qE "^\| $code \| \`$name\` \|" docs/cli.md || miss "docs/cli.md: exit code $code ($name) in the exit-code table"
done <<<"$codes"

# (e) subcommands and options of --help.
help=$("$JTRAIN" --help) || fail "jtrain --help failed"
cmds=$(grep -oE '^  jtrain [a-z-]+' <<<"$help" | awk '{print $2}')
[ -n "$cmds" ] || fail "no subcommands in jtrain --help"
for c in $cmds; do
  grep -qE "^## $c\b|^jtrain $c\b" docs/cli.md || miss "docs/cli.md: subcommand '$c' of jtrain --help"
done
for o in $(grep -oE -- '--[a-z][a-z-]*' <<<"$help" | sort -u); do
  grep -qF -- "$o" docs/cli.md || miss "docs/cli.md: option $o of jtrain --help"
done

[ "$problems" -eq 0 ] || fail "$problems documentation problem(s), listed above"
pass "docs: $nkeys config keys, $(wc -l <<<"$codes") exit codes, $(wc -w <<<"$cmds") subcommands, paths and links"
