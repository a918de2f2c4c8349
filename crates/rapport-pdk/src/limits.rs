//! What the host accepts from a connector. Crossing a limit fails the call, and the
//! connector's status names the limit (and the event, when it is about one); the
//! builders here cut titles, summaries and text attributes to fit, so a connector
//! built with them stays inside the text limits. The host's own copies of these
//! numbers are checked against these by its test suite.

/// Longest event title, in characters ([`crate::event`] cuts to it).
pub const TITLE_CHARS_MAX: usize = 500;
/// Longest event summary, in characters ([`Event::summary`](crate::Event::summary)
/// cuts to it).
pub const SUMMARY_CHARS_MAX: usize = 10_000;
/// Longest source id, in bytes.
pub const SOURCE_ID_BYTES_MAX: usize = 512;
/// Longest URL, in bytes.
pub const URL_BYTES_MAX: usize = 2_048;
/// Most attributes on one event.
pub const ATTRIBUTES_MAX: usize = 64;
/// Longest attribute name, in bytes.
pub const ATTRIBUTE_NAME_BYTES_MAX: usize = 64;
/// Longest text attribute, in bytes ([`Event::text`](crate::Event::text) cuts to it).
pub const ATTRIBUTE_TEXT_BYTES_MAX: usize = 16 * 1024;
/// Longest actor name, in characters.
pub const ACTOR_NAME_CHARS_MAX: usize = 200;
/// Most account hints of each kind (external ids, emails, domains) on one event.
pub const HINTS_MAX: usize = 64;
/// Most bytes of text one event carries in all.
pub const EVENT_BYTES_MAX: usize = 64 * 1024;
/// Largest amount of money, in minor units, either side of zero.
pub const MONEY_MINOR_UNITS_MAX: i64 = 1_000_000_000_000_000;
/// Largest checkpoint, in bytes: where the sync is, not data.
pub const CHECKPOINT_BYTES_MAX: usize = 64 * 1024;
/// Most source ids one page may delete.
pub const DELETES_MAX: usize = 10_000;
/// Longest manifest name, in characters.
pub const MANIFEST_NAME_CHARS_MAX: usize = 64;
/// Longest manifest description, in characters.
pub const MANIFEST_DESCRIPTION_CHARS_MAX: usize = 1_000;
/// Longest error message kept, in bytes; the rest is cut.
pub const ERROR_MESSAGE_BYTES_MAX: usize = 2 * 1024;
/// Longest log line kept, in bytes; the rest is cut.
pub const LOG_LINE_BYTES_MAX: usize = 4 * 1024;

/// `text` cut to at most `chars_max` characters, ending in `…` when cut.
pub fn cut_chars(text: &str, chars_max: usize) -> String {
    match text.char_indices().nth(chars_max) {
        None => text.to_owned(),
        Some(_) => {
            let mut cut: String = text.chars().take(chars_max.saturating_sub(1)).collect();
            cut.push('…');
            cut
        }
    }
}

/// `text` cut to at most `bytes_max` bytes on a character boundary, ending in `…`
/// when cut.
pub fn cut_bytes(text: &str, bytes_max: usize) -> String {
    if text.len() <= bytes_max {
        return text.to_owned();
    }
    let mut at = bytes_max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let mut cut = text[..at].to_owned();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_land_on_character_boundaries() {
        assert_eq!(cut_chars("héllo", 10), "héllo");
        assert_eq!(cut_chars("héllo", 3), "hé…");
        assert_eq!(cut_bytes("héllo", 100), "héllo");
        let cut = cut_bytes(&"é".repeat(100), 11);
        assert!(cut.len() <= 11 && cut.ends_with('…'), "{cut}");
    }
}
