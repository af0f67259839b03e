//! Free text in issuer requests (`reason`, `request_id`): what may reach the audit trail.
//!
//! The audit trail is read by people, in terminals, admin consoles and exported reports. Text
//! that renders differently from what it is can make an entry lie to its reader: a right-to-left
//! override (U+202E) turns `card found, reinstate` into something that reads backwards, an
//! isolate (U+2066–U+2069) moves words across the line, zero-width characters hide text or make
//! two reasons that look alike differ. So free text refuses, besides control characters (Cc),
//! every **format character** (general category Cf, Unicode 15.1: the bidirectional marks,
//! embeddings, overrides and isolates U+061C, U+200E–U+200F, U+202A–U+202E, U+2066–U+2069, the
//! zero-width characters U+200B–U+200D, U+2060–U+2064, U+FEFF, the soft hyphen, tag characters
//! and the rest) and the line and paragraph separators U+2028/U+2029 (Zl, Zp), which break
//! lines where no control character is. The cost: a reason cannot carry an emoji ZWJ sequence
//! or a Persian zero-width non-joiner; plain text in every script (Hangul included) is unaffected.

use super::ItemProblem;

/// The format characters (Cf) of Unicode 15.1, as inclusive ranges.
const FORMAT: &[(u32, u32)] = &[
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
];

/// Whether `c` is a format character (Cf) or a line or paragraph separator (Zl, Zp).
pub fn is_format(c: char) -> bool {
    let c = u32::from(c);
    c == 0x2028 || c == 0x2029 || FORMAT.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
}

/// Checks free text `v` of field `field`: at most `max` bytes, non-blank if `required`, no
/// control characters, no format characters ([`is_format`]). The problem names the field and,
/// for a forbidden character, its code point and position (never the text itself).
pub fn check(field: &str, v: &str, max: usize, required: bool) -> Result<(), ItemProblem> {
    if (required && v.trim().is_empty()) || v.len() > max || v.chars().any(char::is_control) {
        return Err(ItemProblem::bad(format!(
            "{field} must be {}at most {max} bytes without control characters",
            if required { "non-empty, " } else { "" }
        )));
    }
    if let Some((n, c)) = v.chars().enumerate().find(|&(_, c)| is_format(c)) {
        return Err(ItemProblem::bad(format!(
            "{field} must not contain bidirectional controls or other invisible format \
             characters: U+{:04X} at character {n}",
            u32::from(c)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_and_other_format_characters_are_refused() {
        for c in [
            '\u{202A}',
            '\u{202B}',
            '\u{202C}',
            '\u{202D}',
            '\u{202E}',
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}',
            '\u{200E}',
            '\u{200F}',
            '\u{061C}',
            '\u{200B}',
            '\u{200D}',
            '\u{FEFF}',
            '\u{00AD}',
            '\u{2028}',
            '\u{2029}',
            '\u{E0041}',
            '\u{1343F}',
        ] {
            assert!(is_format(c), "U+{:04X}", u32::from(c));
            let e = check("reason", &format!("lost{c}card"), 500, true).unwrap_err();
            assert_eq!(e.error, crate::issuer::ItemError::BadItem);
            assert!(e.detail.starts_with("reason "), "{}", e.detail);
            assert!(
                e.detail
                    .contains(&format!("U+{:04X} at character 4", u32::from(c))),
                "{}",
                e.detail
            );
        }
        for ok in [
            "분실 신고",
            "lost card",
            "perdió la tarjeta",
            "بطاقة مفقودة",
            "😀",
        ] {
            assert_eq!(check("reason", ok, 500, true), Ok(()), "{ok}");
        }
        assert!(!is_format('\u{2065}') && !is_format('a') && !is_format('\u{200A}'));
        assert!(check("reason", "a\tb", 500, true).is_err());
        assert!(check("reason", " ", 500, true).is_err());
        assert!(check("reason", "", 500, false).is_ok());
    }
}
