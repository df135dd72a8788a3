# Names: 255-byte names, UTF-8, spaces and newlines; ENAMETOOLONG beyond 255 bytes.

repeat_char() {
    head -c "$2" /dev/zero | tr '\0' "$1"
}

sc_name_255() {
    n=$(repeat_char n 255)
    echo long >"$n"
    mkdir "d$(repeat_char d 254)"
    drop_caches
    expect_eq "$(cat "$n")" long "content of a file with a 255-byte name"
    expect_eq "$(ls | grep -c "^$n\$")" 1 "the 255-byte name in the listing"
    [ -d "d$(repeat_char d 254)" ] || fail "directory with a 255-byte name"
    mv "$n" "m$(repeat_char m 254)"
    [ -f "m$(repeat_char m 254)" ] || fail "rename to a 255-byte name"
}

sc_name_too_long() {
    n=$(repeat_char x 256)
    expect_error "File name too long" touch "$n"
    expect_error "File name too long" mkdir "$n"
    echo data >short
    expect_error "File name too long" mv short "$n"
    expect_error "File name too long" ln -s short "$n"
    expect_error "File name too long" ln short "$n"
    expect_error "File name too long" stat "$n"
    expect_eq "$(count_entries .)" 1 "entries after the failed creates"
}

sc_name_utf8() {
    for n in "héllo wörld" "日本語のファイル" "emoji-😀-🚀" "Ωμέγα" "Привет" "x̧̀"; do
        echo "$n" >"$n"
        mkdir "dir-$n"
    done
    drop_caches
    for n in "héllo wörld" "日本語のファイル" "emoji-😀-🚀" "Ωμέγα" "Привет" "x̧̀"; do
        expect_eq "$(cat "$n")" "$n" "content of '$n'"
        [ -d "dir-$n" ] || fail "directory 'dir-$n'"
        expect_eq "$(list_names . | grep -cxF "$n")" 1 "'$n' listed once"
    done
    expect_eq "$(count_entries .)" 12 "entries"
}

sc_name_special() {
    nl=$(printf 'a\nb')
    tab=$(printf 'c\td')
    for n in "with space" " leading space" "trailing space " "$nl" "$tab" "-dash" \
            "quote'\"" 'back\slash' 'star*?[x]' '$dollar' '#hash' ':colon;' '...' ' '; do
        printf '%s' "$n" >"$n"
    done
    drop_caches
    for n in "with space" " leading space" "trailing space " "$nl" "$tab" "-dash" \
            "quote'\"" 'back\slash' 'star*?[x]' '$dollar' '#hash' ':colon;' '...' ' '; do
        [ -f "$n" ] || fail "file named '$n' is missing"
        expect_eq "$(cat -- "$n")" "$n" "content of '$n'"
    done
    expect_eq "$(count_entries .)" 14 "entries"
    perl -e 'opendir(D, ".") or die; my %n = map { $_ => 1 } readdir D;
             $n{"a\nb"} or die "readdir lost the name with a newline\n"'
    mv "$nl" "new
line"
    [ -f "new
line" ] || fail "rename to a name with a newline"
}
