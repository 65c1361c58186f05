//! Email address validation and normalization.
//!
//! An address is one identity: it is trimmed, its local part lowercased and its domain
//! mapped to IDNA ASCII (UTS #46, which also folds case and width variants), so
//! `User@Example.COM`, ` user@example.com ` and `user@ＥＸＡＭＰＬＥ.com` are the same login,
//! with one code and one set of limits. Normalization is idempotent.
//!
//! The local part is restricted to the ASCII characters of RFC 5322's dot-atom, which keeps
//! look-alike characters, quoting tricks and header injection out of every place the
//! address lands (store keys, logs, mail headers).

use std::fmt;

/// The longest address accepted, in bytes (RFC 5321's path limit less the angle brackets).
pub(crate) const MAX_EMAIL_LEN: usize = 254;
/// The shortest address accepted, in characters: `a@b.c` (stated by the OpenAPI document).
#[cfg_attr(not(any(test, feature = "openapi")), allow(dead_code))]
pub(crate) const MIN_EMAIL_CHARS: usize = 5;
const MAX_LOCAL_LEN: usize = 64;
const MAX_LABEL_LEN: usize = 63;

/// A validated, normalized email address.
///
/// ```
/// use otp_core::hooks::Email;
/// let a = Email::parse(" User@Example.COM ").unwrap();
/// assert_eq!(a.as_str(), "user@example.com");
/// assert!(Email::parse("user@example.com\r\nBcc: x@evil.test").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

/// Why an address was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EmailError {
    /// Empty after trimming.
    #[error("the email address is empty")]
    Empty,
    /// More than 254 characters as sent, or longer than 254 bytes once normalized
    /// (RFC 5321).
    #[error("the email address is longer than 254 bytes")]
    TooLong,
    /// Contains a control character (CR, LF, NUL, ...) or inner whitespace.
    #[error("the email address contains control characters or spaces")]
    ControlCharacter,
    /// No `@`, or an empty side of it.
    #[error("the email address must have the form name@domain")]
    Shape,
    /// The part before `@` is not a valid dot-atom of ASCII characters.
    #[error("the part before @ is not valid")]
    LocalPart,
    /// The part before `@` holds MIME encoded-word syntax (`=?…?=`, RFC 2047), which a
    /// mail system may decode into another address.
    #[error("the part before @ holds an encoded word (=?...?=)")]
    EncodedWord,
    /// The domain is not a valid host name.
    #[error("the domain of the email address is not valid")]
    Domain,
}

impl Email {
    /// Validates and normalizes `input`.
    pub fn parse(input: &str) -> Result<Email, EmailError> {
        // Bound the work before any Unicode processing; then no more characters than the
        // normalized form may have bytes, so `maxLength` in the OpenAPI document holds for
        // every accepted input (padding and ignored characters included).
        if input.len() > 4 * MAX_EMAIL_LEN || input.chars().count() > MAX_EMAIL_LEN {
            return Err(EmailError::TooLong);
        }
        // Control characters are refused anywhere, also at the ends: a trailing CR/LF is
        // an injection attempt, not padding.
        if input.chars().any(|c| c.is_control() || is_invisible(c)) {
            return Err(EmailError::ControlCharacter);
        }
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(EmailError::Empty);
        }
        if trimmed.chars().any(char::is_whitespace) {
            return Err(EmailError::ControlCharacter);
        }
        let (local, domain) = trimmed.rsplit_once('@').ok_or(EmailError::Shape)?;
        if local.is_empty() || domain.is_empty() {
            return Err(EmailError::Shape);
        }
        let local = normalize_local(local)?;
        let domain = normalize_domain(domain)?;
        let mut out = String::with_capacity(local.len() + 1 + domain.len());
        out.push_str(&local);
        out.push('@');
        out.push_str(&domain);
        if out.len() > MAX_EMAIL_LEN {
            return Err(EmailError::TooLong);
        }
        Ok(Email(out))
    }

    /// The normalized address.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The normalized domain (IDNA ASCII).
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or_default()
    }

    /// The address as a page may show it to let a user recognize their account: the first
    /// two and the last character of the local part and the whole domain
    /// (`bo•••b@gmail.com`); a local part of four characters or fewer is shown whole. An
    /// attacker's address rarely shares all three characters and the domain with the
    /// victim's, so a link to another account does not pass for one's own.
    pub fn masked(&self) -> String {
        let (local, domain) = self.0.rsplit_once('@').unwrap_or((&self.0, ""));
        // The local part is ASCII (dot-atom), so byte slicing is character slicing.
        if local.len() <= 4 {
            return format!("{local}@{domain}");
        }
        let (head, last) = (&local[..2], &local[local.len() - 1..]);
        format!("{head}\u{2022}\u{2022}\u{2022}{last}@{domain}")
    }
}

// Zero-width and bidi controls are format characters (Cf), not `is_control`, yet they make
// two addresses that look the same differ.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}' | '\u{00AD}')
}

fn normalize_local(local: &str) -> Result<String, EmailError> {
    if local.len() > MAX_LOCAL_LEN {
        return Err(EmailError::LocalPart);
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(EmailError::LocalPart);
    }
    if !local.bytes().all(is_atext_or_dot) {
        return Err(EmailError::LocalPart);
    }
    // `=?utf-8?q?attacker=40evil.example?=@example.com` is valid dot-atom, but a system
    // that decodes encoded words sees `attacker@evil.example`: refuse the syntax outright.
    if local.contains("=?") || local.contains("?=") {
        return Err(EmailError::EncodedWord);
    }
    Ok(local.to_ascii_lowercase())
}

// RFC 5322 atext, plus the dot of dot-atom.
fn is_atext_or_dot(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&b)
}

fn normalize_domain(domain: &str) -> Result<String, EmailError> {
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    let ascii = idna::domain_to_ascii_strict(domain).map_err(|_| EmailError::Domain)?;
    let labels: Vec<&str> = ascii.split('.').collect();
    if labels.len() < 2 {
        return Err(EmailError::Domain);
    }
    for label in &labels {
        let ok = !label.is_empty()
            && label.len() <= MAX_LABEL_LEN
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(EmailError::Domain);
        }
    }
    // A top-level label of digits only is an IP address in disguise, not a domain.
    if labels
        .last()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(EmailError::Domain);
    }
    Ok(ascii)
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// The address is personal data: Debug shows it only in part, so a stray `{:?}` in a log
// line does not spill it.
impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Less than `masked` (one character): `Debug` output lands in logs.
        let (local, domain) = self.0.rsplit_once('@').unwrap_or((&self.0, ""));
        let first = local.get(..1).unwrap_or_default();
        write!(f, "Email({first}\u{2022}\u{2022}\u{2022}@{domain})")
    }
}

impl AsRef<str> for Email {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_shows_two_first_and_the_last_character_and_the_domain() {
        let e = Email::parse("Ada.Lovelace@Example.com").unwrap();
        assert_eq!(e.masked(), "ad\u{2022}\u{2022}\u{2022}e@example.com");
        let e = Email::parse("x@b\u{fc}cher.example").unwrap();
        assert_eq!(
            e.masked(),
            "x@xn--bcher-kva.example",
            "four or fewer: whole"
        );
        let e = Email::parse("abcd@example.com").unwrap();
        assert_eq!(e.masked(), "abcd@example.com");
        // The look-alike of the attack no longer looks alike.
        let victim = Email::parse("bob@gmail.com").unwrap().masked();
        let attacker = Email::parse("b.attacker.2024@gmail.com").unwrap().masked();
        assert_eq!(victim, "bob@gmail.com");
        assert_eq!(attacker, "b.\u{2022}\u{2022}\u{2022}4@gmail.com");
        assert_ne!(victim, attacker);
    }

    #[test]
    fn encoded_words_are_refused() {
        for a in [
            "=?utf-8?q?attacker=40evil.example?=@example.com",
            "=?utf-8?b?YXR0YWNrZXJAZXZpbC5leGFtcGxl?=@example.com",
            "x=?y@example.com",
            "x?=y@example.com",
        ] {
            assert_eq!(Email::parse(a), Err(EmailError::EncodedWord), "{a}");
        }
        // `=` and `?` alone stay valid dot-atom characters.
        assert!(Email::parse("a=b?c@example.com").is_ok());
    }
    use proptest::prelude::*;

    #[test]
    fn case_and_space_variants_are_one_identity() {
        let variants = [
            "user@example.com",
            "User@Example.COM",
            "  USER@EXAMPLE.COM ",
            "user@EXAMPLE.com.",
            "user@ｅｘａｍｐｌｅ.com",
        ];
        for v in variants {
            assert_eq!(Email::parse(v).unwrap().as_str(), "user@example.com", "{v}");
        }
    }

    #[test]
    fn unicode_domain_goes_to_punycode() {
        let e = Email::parse("anna@Bücher.example").unwrap();
        assert_eq!(e.as_str(), "anna@xn--bcher-kva.example");
        assert_eq!(Email::parse(e.as_str()).unwrap(), e);
    }

    #[test]
    fn refuses_injection_and_garbage() {
        let bad = [
            "",
            "   ",
            "user",
            "@example.com",
            "user@",
            "user@example",
            "user@@example.com",
            "us er@example.com",
            "user@example.com\r\nBcc: victim@example.org",
            "user@example.com\nX: y",
            "user@example.com\r\n",
            "\tuser@example.com",
            "user\0@example.com",
            "user@exa\u{7f}mple.com",
            "us\u{200B}er@example.com",
            "\"quoted\"@example.com",
            "user.@example.com",
            ".user@example.com",
            "us..er@example.com",
            "usér@example.com",
            "user@-example.com",
            "user@exa_mple.com",
            "user@127.0.0.1",
            "user@[127.0.0.1]",
            "user@example..com",
            "<user@example.com>",
            "user@example.com,other@example.com",
        ];
        for b in bad {
            assert!(Email::parse(b).is_err(), "{b:?} was accepted");
        }
    }

    #[test]
    fn length_limits() {
        let local = "a".repeat(64);
        let domain = format!("{}.com", "b".repeat(63));
        assert!(Email::parse(&format!("{local}@{domain}")).is_ok());
        assert!(Email::parse("a@b.c").is_ok(), "the shortest address");
        assert_eq!(
            Email::parse(&format!("{}@example.com", "a".repeat(65))),
            Err(EmailError::LocalPart)
        );
        let long_domain = format!("{0}.{0}.{0}.{0}.com", "c".repeat(60));
        assert_eq!(
            Email::parse(&format!("{}@{long_domain}", "a".repeat(10))),
            Err(EmailError::TooLong)
        );
        assert_eq!(Email::parse(&"x".repeat(5000)), Err(EmailError::TooLong));
        // 254 characters as sent is the bound, whatever trimming would leave: the OpenAPI
        // document's `maxLength` is true of every accepted input.
        let full = format!("{local}@{0}.{0}.{1}.com", "b".repeat(63), "c".repeat(57));
        assert_eq!(full.len(), MAX_EMAIL_LEN);
        assert!(Email::parse(&full).is_ok());
        assert_eq!(Email::parse(&format!(" {full}")), Err(EmailError::TooLong));
        let padded = format!("{:>254}", "user@example.com");
        assert!(Email::parse(&padded).is_ok());
        assert_eq!(
            Email::parse(&format!(" {padded}")),
            Err(EmailError::TooLong)
        );
    }

    #[test]
    fn debug_hides_the_address() {
        let e = Email::parse("secret.person@example.com").unwrap();
        let shown = format!("{e:?}");
        assert!(!shown.contains("secret.person"), "{shown}");
        // One character only, less than the page's hint.
        assert_eq!(shown, "Email(s\u{2022}\u{2022}\u{2022}@example.com)");
        let short = format!("{:?}", Email::parse("bob@example.com").unwrap());
        assert_eq!(short, "Email(b\u{2022}\u{2022}\u{2022}@example.com)");
    }

    /// Strategies that build addresses the parser must accept, in the many spellings a
    /// user may type: mixed case, padding, full-width and non-ASCII domain letters, a
    /// trailing dot. Each property below then runs on every generated case (`expect`, not
    /// `if let Ok`), so none can pass by having its inputs refused first.
    mod generate {
        use proptest::prelude::*;

        /// A dot-atom local part: atext runs joined by single dots (no `=?`/`?=`).
        pub(super) fn local() -> impl Strategy<Value = String> {
            proptest::collection::vec("[A-Za-z0-9!#$%&'*+/^_`{|}~-]{1,12}", 1..4)
                .prop_map(|parts| parts.join("."))
        }

        /// A domain of 2 to 4 labels, some of them in letters IDNA maps (umlauts, sharp s,
        /// full-width Latin), the top-level one alphabetic; maybe a trailing dot.
        pub(super) fn domain() -> impl Strategy<Value = String> {
            let label = prop_oneof![
                "[a-zA-Z0-9]{1,10}",
                "[a-z]{1,4}[äöüéß][a-z]{0,4}",
                "[ａ-ｚ]{1,6}",
                "[a-z0-9]{1,4}-[a-z0-9]{1,4}",
            ];
            (
                proptest::collection::vec(label, 1..4),
                "[a-zA-Z]{2,6}",
                any::<bool>(),
            )
                .prop_map(|(labels, tld, dot)| {
                    let mut d = labels.join(".");
                    d.push('.');
                    d.push_str(&tld);
                    if dot {
                        d.push('.');
                    }
                    d
                })
        }

        /// A whole address, maybe padded with spaces.
        pub(super) fn address() -> impl Strategy<Value = String> {
            (local(), domain(), " {0,2}", " {0,2}")
                .prop_map(|(l, d, before, after)| format!("{before}{l}@{d}{after}"))
        }
    }

    proptest! {
        #[test]
        fn normalization_is_idempotent(input in generate::address()) {
            let once = Email::parse(&input).expect("a valid address by construction");
            let twice = Email::parse(once.as_str()).expect("a normalized address parses");
            prop_assert_eq!(&once, &twice);
            // And one identity whatever the case of the local part.
            let (local, domain) = input.trim().rsplit_once('@').unwrap();
            let upper = Email::parse(&format!("{}@{domain}", local.to_ascii_uppercase()));
            prop_assert_eq!(upper.as_ref(), Ok(&once));
        }

        #[test]
        fn normalized_addresses_are_lowercase_ascii_within_the_limit(input in generate::address()) {
            let e = Email::parse(&input).expect("a valid address by construction");
            prop_assert!(e.as_str().len() <= MAX_EMAIL_LEN);
            prop_assert!(e.as_str().bytes().all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase()));
        }

        /// The bounds the OpenAPI document states (`minLength` 5, `maxLength` 254, in
        /// characters) hold for every accepted input, and the upper one is where the parser
        /// draws the line: valid addresses of 240 to 270 characters are accepted exactly up
        /// to 254.
        #[test]
        fn accepted_inputs_are_within_the_documented_lengths(
            total in 240_usize..270,
            local_len in 1_usize..=64,
        ) {
            // `<local>@<k labels of 63>.<r letters>.com`, exactly `total` characters.
            let rest = total - local_len - 1 - 4;
            let (k, r) = ((rest - 1) / 64, (rest - 1) % 64 + 1);
            prop_assume!(r <= 63);
            let mut labels = vec!["d".repeat(63); k];
            labels.push("e".repeat(r));
            let input = format!("{}@{}.com", "l".repeat(local_len), labels.join("."));
            prop_assert_eq!(input.chars().count(), total);
            let accepted = Email::parse(&input).is_ok();
            prop_assert_eq!(accepted, total <= MAX_EMAIL_LEN, "{} characters", total);
        }

        #[test]
        fn inputs_below_the_documented_minimum_are_refused(input in "[a-z@.]{0,4}") {
            prop_assert!(input.chars().count() < MIN_EMAIL_CHARS);
            prop_assert!(Email::parse(&input).is_err());
        }

        /// A control character anywhere in an otherwise valid address (CR, LF, NUL, tab,
        /// NEL...) refuses it; a Unicode line or paragraph separator is refused inside and
        /// trimmed at the ends, never kept.
        #[test]
        fn accepted_addresses_never_hold_header_breaking_bytes(
            input in generate::address(),
            at in any::<proptest::sample::Index>(),
            bad in prop::sample::select(vec!['\r', '\n', '\0', '\t', '\u{b}', '\u{c}', '\u{85}', '\u{1b}', '\u{2028}', '\u{2029}']),
        ) {
            let bounds: Vec<usize> = input
                .char_indices()
                .map(|(i, _)| i)
                .chain([input.len()])
                .collect();
            let i = bounds[at.index(bounds.len())];
            let mut tampered = input.clone();
            tampered.insert(i, bad);
            match Email::parse(&tampered) {
                Err(_) => {}
                Ok(e) => {
                    prop_assert!(!bad.is_control(), "{tampered:?} accepted as {e}");
                    prop_assert!(!e.as_str().contains(bad), "{tampered:?} kept {bad:?}");
                }
            }
        }
    }
}
