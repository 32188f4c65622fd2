//! Quoting of property values for GStreamer launch descriptions (gst_parse_launch
//! grammar) and for POSIX shells (the printed `gst-launch-1.0` line).

/// Quote one property value for a GStreamer launch description: values made only of
/// characters the launch lexer takes bare are returned as they are; anything else is
/// wrapped in double quotes with `"` and `\` escaped.
pub fn quote_value(value: &str) -> String {
    let bare = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/@+".contains(c));
    if bare {
        value.to_owned()
    } else {
        let mut out = String::with_capacity(value.len() + 2);
        out.push('"');
        for c in value.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
        out
    }
}

/// Quote one word of a launch description for a POSIX shell, so that the shell hands
/// it to `gst-launch-1.0` unchanged (single quotes, `'` written as `'\''`).
pub(crate) fn shell_word(word: &str) -> String {
    let safe = word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.:/@+=,!".contains(c));
    if safe && !word.is_empty() {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_values_stay_bare() {
        assert_eq!(quote_value("zerolatency"), "zerolatency");
        assert_eq!(quote_value("/dev/video0"), "/dev/video0");
    }

    #[test]
    fn special_values_are_quoted_and_escaped() {
        assert_eq!(quote_value("a,b"), "\"a,b\"");
        assert_eq!(quote_value("say \"hi\" \\o/"), "\"say \\\"hi\\\" \\\\o/\"");
        assert_eq!(quote_value(""), "\"\"");
    }

    #[test]
    fn shell_words() {
        assert_eq!(shell_word("x264enc"), "x264enc");
        assert_eq!(shell_word("links=\"a,b\""), "'links=\"a,b\"'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
    }
}
