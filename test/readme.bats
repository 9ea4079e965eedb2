#!/usr/bin/env bats
# readme.bats -- README.md's reference tables agree with shardproxy.c: every
# directive (with its default and reload rule), stat (kind, INFO field,
# Prometheus name), admin command and flag the code has is documented, and
# nothing documented is missing from the code.  test/readme_check.py reads
# both; each check is also run once on a deliberately broken copy to prove
# it can fail.

load helper

check() {
    python3 "$BATS_TEST_DIRNAME/readme_check.py" "$@"
}

# A copy of the tree (the two files the checks read) with README.md edited
# by the sed expression $1; prints the copy's directory.
broken_copy() {
    local dir
    dir="$(sp_tmpdir)/copy"
    mkdir -p "$dir"
    cp "$SP_ROOT/shardproxy.c" "$dir/"
    sed -e "$1" "$SP_ROOT/README.md" >"$dir/README.md"
    cmp -s "$SP_ROOT/README.md" "$dir/README.md" && { echo "sed changed nothing: $1" >&2; return 1; }
    echo "$dir"
}

@test "readme: every directive, its default and reload rule, and nothing else" {
    run check "$SP_ROOT" directives
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" =~ directives:\ ([0-9]+)\ in\ the\ code ]] && ((BASH_REMATCH[1] >= 19))
    dir="$(broken_copy 's/^| `timeout MS` | `1000` |/| `timeout MS` | `2000` |/')"
    run check "$dir" directives
    [ "$status" -eq 1 ]
    [[ "$output" == *"directive timeout: README default '2000', code default '1000'"* ]]
    dir="$(broken_copy '/^| `backend_db N`/d')"
    run check "$dir" directives
    [ "$status" -eq 1 ]
    [[ "$output" == *"directive backend_db is not in README"* ]]
}

@test "readme: every stat with its kind, INFO field and Prometheus name" {
    run check "$SP_ROOT" stats
    echo "$output"
    [ "$status" -eq 0 ]
    dir="$(broken_copy 's/`total_error_replies`/`error_replies`/')"
    run check "$dir" stats
    [ "$status" -eq 1 ]
    [[ "$output" == *"proxy stat errors: README INFO field 'error_replies'"* ]]
    dir="$(broken_copy 's/^| backend | `reconnects` |/| backend | `reconnections` |/')"
    run check "$dir" stats
    [ "$status" -eq 1 ]
    [[ "$output" == *"backend stat reconnects is not in README"* ]]
    [[ "$output" == *"README documents backend stat reconnections"* ]]
}

@test "readme: every admin command and command-line flag" {
    run check "$SP_ROOT" admin
    echo "$output"
    [ "$status" -eq 0 ]
    run check "$SP_ROOT" flags
    echo "$output"
    [ "$status" -eq 0 ]
    dir="$(broken_copy '/^| `clients` | one line per client/d')"
    run check "$dir" admin
    [ "$status" -eq 1 ]
    dir="$(broken_copy 's/^| `--table` |/| `--tables` |/')"
    run check "$dir" flags
    [ "$status" -eq 1 ]
}
