//! Scanner-safe sign-in links: the sealed link token.
//!
//! The login mail can carry a link `<public_url>/magic?token=…` beside the code. The token
//! is self-contained: an XChaCha20-Poly1305 box holding the normalized address, the code and
//! the issue time, under a key derived from the code secret. The server stores nothing
//! extra: opening a token yields the address and the code, and the engine then checks that
//! code exactly as `/verify-otp` does, so the link and the code are one secret, spent
//! together, under the same attempt limits and lockouts. Without the server key nobody can
//! forge or alter a token, and the address cannot be read from the URL.
//!
//! Opening the link (`GET <mount>/magic`) changes nothing: it shows the confirmation page
//! (in the HTTP layer), whose button posts the token to `<mount>/verify-link`. Mail
//! scanners that fetch every link therefore cannot spend the code.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{Key, KeyInit, XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::Rng;
use secrecy::zeroize::Zeroize;
use sha2::Sha256;

use crate::code::Code;
use crate::email::Email;

type HmacSha256 = Hmac<Sha256>;

/// The longest token [`LinkSealer::open`] looks at, in characters. A genuine token of the
/// longest address and code is about 420; anything longer is refused before decoding.
pub(crate) const MAX_TOKEN_LEN: usize = 512;

/// How far in the future an issue time may lie (clock skew between servers), in seconds.
const MAX_CLOCK_SKEW_SECS: u64 = 60;

/// The HMAC message that derives the link key from the code secret.
const KEY_LABEL: &[u8] = b"otp-auth sign-in link key v1";
/// Associated data of every token: binds the box to this purpose and format.
const AAD: &[u8] = b"otp-auth/sign-in-link/v1";
/// The plaintext format version of a login's link.
const VERSION: u8 = 1;
/// The version of an administrator's sign-in link: its own lifetime and its flow.
const VERSION_SIGN_IN: u8 = 2;
pub(crate) use crate::engine::MAX_SIGN_IN_SECS;

/// What a token holds: the address and code, and for an administrator's sign-in its flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Opened {
    /// The normalized address.
    pub(crate) email: Email,
    /// The code.
    pub(crate) code: Code,
    /// The flow id of an administrator's sign-in, which the link verifies bound.
    pub(crate) flow: Option<String>,
}

const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Version byte, issue time, code length byte.
const HEADER_LEN: usize = 1 + 8 + 1;

/// Why a link token was refused. The messages never include the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LinkError {
    /// Malformed, altered, sealed under another key, issued in the future, or holding an
    /// address or code that no longer validates.
    #[error("the sign-in link is not valid")]
    Invalid,
    /// Authentic, but older than the allowed age.
    #[error("the sign-in link has expired")]
    Expired,
}

/// Seals and opens sign-in link tokens under a key derived from the code secret.
#[derive(Clone)]
pub(crate) struct LinkSealer {
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for LinkSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkSealer { key: *** }")
    }
}

impl LinkSealer {
    /// A sealer whose key is HMAC-SHA256(`code_secret`, "otp-auth sign-in link key v1"),
    /// so the code MAC key itself is never used as a cipher key.
    pub(crate) fn new(code_secret: &[u8]) -> LinkSealer {
        let Ok(mut mac) = <HmacSha256 as Mac>::new_from_slice(code_secret) else {
            unreachable!("HMAC takes keys of every length")
        };
        mac.update(KEY_LABEL);
        let mut key: Key = mac.finalize().into_bytes();
        let cipher = XChaCha20Poly1305::new(&key);
        (*key).zeroize();
        LinkSealer { cipher }
    }

    /// Seals `email`, `code` and `issued_at` (Unix seconds) into a URL-safe token:
    /// base64url without padding of `nonce (24 bytes) || ciphertext || tag (16 bytes)`,
    /// with a fresh random nonce each time.
    pub(crate) fn seal(&self, email: &Email, code: &Code, issued_at: u64) -> String {
        self.seal_flow(email, code, issued_at, None)
    }

    /// [`LinkSealer::seal`] for an administrator's sign-in: with its flow id and its own
    /// lifetime in seconds (at most [`MAX_SIGN_IN_SECS`]), after the issue time.
    pub(crate) fn seal_sign_in(
        &self,
        email: &Email,
        code: &Code,
        issued_at: u64,
        (flow, lifetime): (&str, u64),
    ) -> String {
        self.seal_flow(email, code, issued_at, Some((flow, lifetime)))
    }

    fn seal_flow(
        &self,
        email: &Email,
        code: &Code,
        issued_at: u64,
        sign_in: Option<(&str, u64)>,
    ) -> String {
        let digits = code.expose().as_bytes();
        let address = email.as_str().as_bytes();
        let mut plain = Vec::with_capacity(HEADER_LEN + 70 + digits.len() + address.len());
        plain.push(if sign_in.is_some() {
            VERSION_SIGN_IN
        } else {
            VERSION
        });
        plain.extend_from_slice(&issued_at.to_be_bytes());
        if let Some((flow, lifetime)) = sign_in {
            let lifetime = u32::try_from(lifetime.min(MAX_SIGN_IN_SECS)).unwrap_or(u32::MAX);
            plain.extend_from_slice(&lifetime.to_be_bytes());
            // Flow ids are 16 to 64 characters.
            plain.push(u8::try_from(flow.len()).unwrap_or(u8::MAX));
            plain.extend_from_slice(flow.as_bytes());
        }
        // Codes are 6 to 10 digits; `Code` cannot hold more than `u8::MAX` (its length is a u8).
        plain.push(u8::try_from(digits.len()).unwrap_or(u8::MAX));
        plain.extend_from_slice(digits);
        plain.extend_from_slice(address);

        let nonce: [u8; NONCE_LEN] = rand::rng().random();
        let sealed = self.cipher.encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: &plain,
                aad: AAD,
            },
        );
        plain.zeroize();
        // Encryption fails only for messages beyond 256 GiB; ours are under 300 bytes.
        let Ok(sealed) = sealed else {
            unreachable!("XChaCha20-Poly1305 seals any message of this size")
        };
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// Opens a token: checks its length (at most [`MAX_TOKEN_LEN`] characters, before any
    /// decoding), decodes and authenticates it, re-validates the address with
    /// [`Email::parse`] and the code with [`Code::parse`] against `code_len`, and checks its
    /// age: older than `max_age_secs` at `now` is [`LinkError::Expired`], issued more than a
    /// minute after `now` is [`LinkError::Invalid`].
    pub(crate) fn open(
        &self,
        token: &str,
        now: u64,
        max_age_secs: u64,
        code_len: u8,
    ) -> Result<Opened, LinkError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(LinkError::Invalid);
        }
        let raw = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| LinkError::Invalid)?;
        if raw.len() < NONCE_LEN + TAG_LEN + HEADER_LEN {
            return Err(LinkError::Invalid);
        }
        let (nonce, sealed) = raw
            .split_first_chunk::<NONCE_LEN>()
            .ok_or(LinkError::Invalid)?;
        let mut plain = self
            .cipher
            .decrypt(
                &XNonce::from(*nonce),
                Payload {
                    msg: sealed,
                    aad: AAD,
                },
            )
            .map_err(|_| LinkError::Invalid)?;
        let opened = parse_plaintext(&plain, now, max_age_secs, code_len);
        plain.zeroize();
        opened
    }
}

fn parse_plaintext(
    plain: &[u8],
    now: u64,
    max_age_secs: u64,
    code_len: u8,
) -> Result<Opened, LinkError> {
    let [
        version,
        t0,
        t1,
        t2,
        t3,
        t4,
        t5,
        t6,
        t7,
        digits_len,
        rest @ ..,
    ] = plain
    else {
        return Err(LinkError::Invalid);
    };
    let (max_age_secs, flow, digits_len, rest) = match *version {
        VERSION => (max_age_secs, None, *digits_len, rest),
        VERSION_SIGN_IN => {
            // `digits_len` is the lifetime's first byte here.
            let [l1, l2, l3, flow_len, rest @ ..] = rest else {
                return Err(LinkError::Invalid);
            };
            let lifetime = u32::from_be_bytes([*digits_len, *l1, *l2, *l3]);
            let (flow, rest) = rest
                .split_at_checked(usize::from(*flow_len))
                .ok_or(LinkError::Invalid)?;
            let flow = std::str::from_utf8(flow).map_err(|_| LinkError::Invalid)?;
            let [digits_len, rest @ ..] = rest else {
                return Err(LinkError::Invalid);
            };
            let lifetime = u64::from(lifetime).min(MAX_SIGN_IN_SECS);
            (lifetime, Some(flow.to_owned()), *digits_len, rest)
        }
        _ => return Err(LinkError::Invalid),
    };
    let issued_at = u64::from_be_bytes([*t0, *t1, *t2, *t3, *t4, *t5, *t6, *t7]);
    if issued_at > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
        return Err(LinkError::Invalid);
    }
    if issued_at.saturating_add(max_age_secs) < now {
        return Err(LinkError::Expired);
    }
    let (digits, address) = rest
        .split_at_checked(usize::from(digits_len))
        .ok_or(LinkError::Invalid)?;
    let digits = std::str::from_utf8(digits).map_err(|_| LinkError::Invalid)?;
    let code = Code::parse(digits, code_len).ok_or(LinkError::Invalid)?;
    let address = std::str::from_utf8(address).map_err(|_| LinkError::Invalid)?;
    let email = Email::parse(address).map_err(|_| LinkError::Invalid)?;
    // A sealed address is already normalized; anything else did not come from `seal`.
    if email.as_str() != address {
        return Err(LinkError::Invalid);
    }
    Ok(Opened { email, code, flow })
}

/// The sign-in link: `<public_url>/magic?token=<token>`.
///
/// `public_url` is where the login routes are mounted, without a trailing slash (the
/// configuration checks that). The token is base64url without padding (`A-Z a-z 0-9 - _`),
/// all unreserved URL characters, so it goes into the query as it is, with no
/// percent-encoding.
pub(crate) fn link_url(public_url: &str, token: &str) -> String {
    format!("{public_url}/magic?token={token}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;
    const AGE: u64 = 600;

    fn sealer() -> LinkSealer {
        LinkSealer::new(&[7u8; 32])
    }

    fn email() -> Email {
        Email::parse("ada.lovelace@example.com").unwrap()
    }

    fn code() -> Code {
        Code::parse("012345", 6).unwrap()
    }

    #[test]
    fn roundtrip() {
        let s = sealer();
        let token = s.seal(&email(), &code(), NOW);
        let opened = s.open(&token, NOW + 5, AGE, 6).unwrap();
        assert_eq!(opened.email, email());
        assert_eq!(opened.code, code());
        assert_eq!(opened.flow, None);
        // The edges: exactly max_age old, and a minute of clock skew.
        assert!(s.open(&token, NOW + AGE, AGE, 6).is_ok());
        assert!(s.open(&token, NOW - 60, AGE, 6).is_ok());
    }

    #[test]
    fn roundtrip_longest_address_and_code_fits_the_cap() {
        let s = sealer();
        let local = "a".repeat(64);
        let domain = format!("{0}.{0}.{0}.c.com", "b".repeat(60));
        let e = Email::parse(&format!("{local}@{domain}")).unwrap();
        assert!(e.as_str().len() > 240);
        let c = Code::parse("0123456789", 10).unwrap();
        let token = s.seal(&e, &c, NOW);
        assert!(token.len() <= MAX_TOKEN_LEN, "{}", token.len());
        let opened = s.open(&token, NOW, AGE, 10).unwrap();
        assert_eq!((opened.email, opened.code), (e, c));
        // An administrator's sign-in of the longest flow id too.
        let flow = "f".repeat(64);
        let token = s.seal_sign_in(
            &opened_email(&token, &s),
            &Code::parse("0123456789", 10).unwrap(),
            NOW,
            (&flow, 3600),
        );
        assert!(token.len() <= MAX_TOKEN_LEN, "{}", token.len());
        assert_eq!(s.open(&token, NOW, AGE, 10).unwrap().flow, Some(flow));
    }

    fn opened_email(token: &str, s: &LinkSealer) -> Email {
        s.open(token, NOW, AGE, 10).unwrap().email
    }

    #[test]
    fn sign_in_links_carry_their_flow_and_lifetime() {
        let s = sealer();
        let flow = "abcdefghijklmnopqrstuv";
        let day = 86_400;
        let token = s.seal_sign_in(&email(), &code(), NOW, (flow, day));
        let opened = s.open(&token, NOW + day, AGE, 6).unwrap();
        assert_eq!(
            (opened.email, opened.code, opened.flow.as_deref()),
            (email(), code(), Some(flow)),
            "valid for its own lifetime, not the code's"
        );
        assert_eq!(
            s.open(&token, NOW + day + 1, AGE, 6),
            Err(LinkError::Expired)
        );
        // The lifetime is capped at seven days, sealed or not.
        let long = s.seal_sign_in(&email(), &code(), NOW, (flow, u64::MAX));
        assert!(s.open(&long, NOW + MAX_SIGN_IN_SECS, AGE, 6).is_ok());
        assert_eq!(
            s.open(&long, NOW + MAX_SIGN_IN_SECS + 1, AGE, 6),
            Err(LinkError::Expired)
        );
        // Truncated plaintexts of the second version are refused.
        for cut in 0..40 {
            let mut plain = vec![VERSION_SIGN_IN];
            plain.extend_from_slice(&NOW.to_be_bytes());
            plain.extend_from_slice(&3600u32.to_be_bytes());
            plain.push(22);
            plain.extend_from_slice(flow.as_bytes());
            plain.push(6);
            plain.extend_from_slice(b"012345");
            plain.truncate(cut);
            assert_eq!(
                parse_plaintext(&plain, NOW, AGE, 6),
                Err(LinkError::Invalid),
                "{cut}"
            );
        }
    }

    #[test]
    fn tampering_any_byte_is_invalid() {
        let s = sealer();
        let token = s.seal(&email(), &code(), NOW);
        let raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
        for i in 0..raw.len() {
            for bit in [0x01u8, 0x80] {
                let mut t = raw.clone();
                t[i] ^= bit;
                let altered = URL_SAFE_NO_PAD.encode(&t);
                assert_eq!(
                    s.open(&altered, NOW, AGE, 6),
                    Err(LinkError::Invalid),
                    "{i}"
                );
            }
        }
        // Truncated or extended tokens too.
        let short = URL_SAFE_NO_PAD.encode(&raw[..raw.len() - 1]);
        assert_eq!(s.open(&short, NOW, AGE, 6), Err(LinkError::Invalid));
        let mut long = raw.clone();
        long.push(0);
        let long = URL_SAFE_NO_PAD.encode(&long);
        assert_eq!(s.open(&long, NOW, AGE, 6), Err(LinkError::Invalid));
    }

    #[test]
    fn tampering_any_character_is_invalid() {
        let s = sealer();
        let token = s.seal(&email(), &code(), NOW);
        for i in 0..token.len() {
            let mut t = token.clone().into_bytes();
            t[i] = if t[i] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(t).unwrap();
            assert_eq!(
                s.open(&altered, NOW, AGE, 6),
                Err(LinkError::Invalid),
                "{i}"
            );
        }
    }

    #[test]
    fn token_of_another_secret_is_invalid() {
        let token = LinkSealer::new(&[8u8; 32]).seal(&email(), &code(), NOW);
        assert_eq!(sealer().open(&token, NOW, AGE, 6), Err(LinkError::Invalid));
    }

    #[test]
    fn key_is_not_the_code_secret() {
        // A cipher keyed with the raw secret must not open the sealer's tokens.
        let secret = [7u8; 32];
        let raw_key = XChaCha20Poly1305::new(&Key::from(secret));
        let token = sealer().seal(&email(), &code(), NOW);
        let raw = URL_SAFE_NO_PAD.decode(token).unwrap();
        let (nonce, sealed) = raw.split_first_chunk::<NONCE_LEN>().unwrap();
        let opened = raw_key.decrypt(
            &XNonce::from(*nonce),
            Payload {
                msg: sealed,
                aad: AAD,
            },
        );
        assert!(opened.is_err());
    }

    #[test]
    fn expired_token_is_expired() {
        let s = sealer();
        let token = s.seal(&email(), &code(), NOW);
        assert_eq!(
            s.open(&token, NOW + AGE + 1, AGE, 6),
            Err(LinkError::Expired)
        );
        assert_eq!(s.open(&token, u64::MAX, AGE, 6), Err(LinkError::Expired));
    }

    #[test]
    fn future_issue_time_is_invalid() {
        let s = sealer();
        let token = s.seal(&email(), &code(), NOW + 61);
        assert_eq!(s.open(&token, NOW, AGE, 6), Err(LinkError::Invalid));
        let token = s.seal(&email(), &code(), u64::MAX);
        assert_eq!(s.open(&token, NOW, u64::MAX, 6), Err(LinkError::Invalid));
    }

    #[test]
    fn other_code_length_is_invalid() {
        let s = sealer();
        let token = s.seal(&email(), &code(), NOW);
        assert_eq!(s.open(&token, NOW, AGE, 8), Err(LinkError::Invalid));
    }

    #[test]
    fn overlong_token_is_invalid_without_decoding() {
        let s = sealer();
        // Valid base64url of the right shape would still be refused by length alone; a
        // string of invalid characters shows nothing gets decoded.
        assert_eq!(
            s.open(&"A".repeat(MAX_TOKEN_LEN + 1), NOW, AGE, 6),
            Err(LinkError::Invalid)
        );
        let huge = "!".repeat(10 * 1024 * 1024);
        assert_eq!(s.open(&huge, NOW, AGE, 6), Err(LinkError::Invalid));
        // A genuine token padded past the cap is refused too.
        let token = s.seal(&email(), &code(), NOW);
        let padded = format!("{token}{}", "A".repeat(MAX_TOKEN_LEN));
        assert_eq!(s.open(&padded, NOW, AGE, 6), Err(LinkError::Invalid));
    }

    #[test]
    fn garbage_is_invalid() {
        let s = sealer();
        for bad in [
            "",
            "A",
            "not base64!",
            "%%%%",
            "aGVsbG8=",
            "aGVsbG8",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/",
            "ü",
        ] {
            assert_eq!(s.open(bad, NOW, AGE, 6), Err(LinkError::Invalid), "{bad:?}");
        }
        // The right length of random bytes authenticates as nothing.
        let random: [u8; 80] = rand::rng().random();
        let t = URL_SAFE_NO_PAD.encode(random);
        assert_eq!(s.open(&t, NOW, AGE, 6), Err(LinkError::Invalid));
    }

    #[test]
    fn token_hides_the_address_and_code() {
        let s = sealer();
        let e = email();
        let token = s.seal(&e, &code(), NOW);
        let address = e.as_str();
        assert!(!token.contains("ada"), "{token}");
        assert!(!token.contains("example"), "{token}");
        assert!(!token.contains("012345"), "{token}");
        // Nor its base64 at any of the three alignments.
        for shift in 0..3 {
            let shifted = format!("{}{address}", "x".repeat(shift));
            let encoded = URL_SAFE_NO_PAD.encode(shifted.as_bytes());
            // Drop the characters that straddle the prefix and the final partial group.
            let core = &encoded[4..encoded.len() - 4];
            assert!(!token.contains(core), "{shift}: {token}");
        }
        let raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
        assert!(!raw.windows(address.len()).any(|w| w == address.as_bytes()));
    }

    #[test]
    fn two_seals_differ() {
        let s = sealer();
        let a = s.seal(&email(), &code(), NOW);
        let b = s.seal(&email(), &code(), NOW);
        assert_ne!(a, b);
        assert_ne!(a[..32], b[..32]);
        assert_eq!(s.open(&a, NOW, AGE, 6), s.open(&b, NOW, AGE, 6));
    }

    #[test]
    fn debug_and_errors_hide_secrets() {
        let shown = format!("{:?}", sealer());
        assert_eq!(shown, "LinkSealer { key: *** }");
        assert_eq!(
            LinkError::Invalid.to_string(),
            "the sign-in link is not valid"
        );
        assert_eq!(
            LinkError::Expired.to_string(),
            "the sign-in link has expired"
        );
    }

    #[test]
    fn link_url_appends_the_token() {
        let token = sealer().seal(&email(), &code(), NOW);
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(
            link_url("https://app.example.com/auth", &token),
            format!("https://app.example.com/auth/magic?token={token}")
        );
    }
}
