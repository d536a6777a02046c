//! FFmpeg's tokenizer, `av_get_token` (libavutil/avstring.c), and its inverse.
//!
//! Every level of FFmpeg's option syntax reads values with it: a filtergraph
//! (`[],;` ends a filter's arguments), a filter's arguments (`:` ends one), and
//! `key=value:...` dictionaries such as `x264-params`. Its rules, exactly:
//! leading whitespace is skipped; outside quotes `\` takes the next character
//! literally; inside `'...'` every character is literal, `\` included, and a
//! terminator does not end the token; trailing whitespace that was neither
//! quoted nor escaped is dropped.

pub const WHITESPACES: &[char] = &[' ', '\n', '\t', '\r'];

/// Read one token from `buf` up to (not including) a character of `term`
/// outside quotes, and advance `buf` past what was read.
pub fn get_token(buf: &mut &str, term: &[char]) -> String {
    let text = buf.trim_start_matches(WHITESPACES);
    let mut out = String::new();
    // Bytes of `out` that were quoted or escaped, which trimming never removes.
    let mut keep = 0;
    let mut chars = text.char_indices();
    let mut rest = "";
    while let Some((at, c)) = chars.next() {
        if term.contains(&c) {
            rest = &text[at..];
            break;
        }
        match c {
            '\\' => match chars.next() {
                Some((_, next)) => {
                    out.push(next);
                    keep = out.len();
                }
                None => out.push('\\'),
            },
            '\'' => {
                let mut closed = false;
                for (_, q) in chars.by_ref() {
                    if q == '\'' {
                        closed = true;
                        break;
                    }
                    out.push(q);
                }
                if closed {
                    keep = out.len();
                }
            }
            c => out.push(c),
        }
    }
    while out.len() > keep && out.ends_with(WHITESPACES) {
        out.pop();
    }
    *buf = rest;
    out
}

/// Write `value` so that `get_token(_, term)` reads it back unchanged:
/// backslashes before `\`, `'`, every terminator, and whitespace at either end.
pub fn escape(value: &str, term: &[char]) -> String {
    let mut out = String::with_capacity(value.len() + 4);
    let trailing_from = value.trim_end_matches(WHITESPACES).chars().count();
    for (index, c) in value.chars().enumerate() {
        let edge_space = WHITESPACES.contains(&c) && (index == 0 || index >= trailing_from);
        if c == '\\' || c == '\'' || term.contains(&c) || edge_space {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(text: &str, term: &[char]) -> (String, String) {
        let mut buf = text;
        let value = get_token(&mut buf, term);
        (value, buf.to_string())
    }

    #[test]
    fn quotes_keep_backslashes_and_terminators() {
        // Inside quotes a backslash is literal and the quote closes right after it.
        assert_eq!(token(r"'a\',b", &[',']), (r"a\".into(), ",b".into()));
        assert_eq!(token("'a,b';c", &[',', ';']), ("a,b".into(), ";c".into()));
        assert_eq!(token(r"a\,b,c", &[',']), ("a,b".into(), ",c".into()));
        assert_eq!(token(r"a\]b]", &[']']), ("a]b".into(), "]".into()));
    }

    #[test]
    fn whitespace_is_trimmed_unless_kept() {
        assert_eq!(token("  a b  ,", &[',']), ("a b".into(), ",".into()));
        assert_eq!(token(r"a\  ,", &[',']), ("a ".into(), ",".into()));
        assert_eq!(token("' a ' ", &[]), (" a ".into(), "".into()));
        assert_eq!(token("'open", &[]), ("open".into(), "".into()));
        assert_eq!(token(r"end\", &[]), (r"end\".into(), "".into()));
    }

    #[test]
    fn escape_round_trips() {
        for value in [
            " a", "a ", "x:y", r"c:\path", "it's", "a,b;[c]", "", "  ", "\t",
        ] {
            for term in [&[':'][..], &['[', ']', ',', ';'][..]] {
                let escaped = escape(value, term);
                assert_eq!(
                    token(&escaped, term),
                    (value.to_string(), String::new()),
                    "{value:?}"
                );
            }
        }
    }
}
