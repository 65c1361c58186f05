//! One-time codes: generation, parsing, and the keyed hashes that the store holds in
//! their place.
//!
//! The store never sees a code or an address: it gets an [`AddressKey`] (a keyed hash of the
//! normalized address, used in key names) and a [`CodeMac`] (a keyed hash of the code bound
//! to the address). Both come from one server key, the code secret.

use std::fmt;
use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::Rng;
use secrecy::{ExposeSecret, SecretSlice};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::email::Email;

type HmacSha256 = Hmac<Sha256>;

/// Length of a stored code MAC in bytes: 128 bits is far beyond what online guessing reaches.
pub const CODE_MAC_LEN: usize = 16;

/// A one-time code: exactly N ASCII digits, leading zeros kept.
#[derive(Clone, PartialEq, Eq)]
pub struct Code(String);

impl Code {
    /// Draws a code uniformly over all `len`-digit strings from the thread's CSPRNG
    /// (ChaCha, seeded and periodically reseeded from the OS).
    pub fn generate(len: u8) -> Code {
        let mut rng = rand::rng();
        // Digit by digit, each uniform in 0..10 (rejection sampling inside `random_range`),
        // so every string of `len` digits is equally likely and no modulo bias creeps in.
        let s = (0..len)
            .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
            .collect();
        Code(s)
    }

    /// The code of the development "magic" mode: all zeros.
    pub(crate) fn magic(len: u8) -> Code {
        Code("0".repeat(usize::from(len)))
    }

    /// Parses a code sent by a client: exactly `len` ASCII digits, nothing else.
    pub fn parse(input: &str, len: u8) -> Option<Code> {
        (input.len() == usize::from(len) && input.bytes().all(|b| b.is_ascii_digit()))
            .then(|| Code(input.to_owned()))
    }

    /// The digits. Handle with care: this is the secret the user proves possession of.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Code(***)")
    }
}

/// The keyed hash of a code bound to its address, as the store keeps it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CodeMac(pub [u8; CODE_MAC_LEN]);

impl CodeMac {
    /// Compares two MACs in constant time.
    pub fn ct_eq(&self, other: &CodeMac) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    /// A MAC that no code produces (drawn at random); stored for addresses a hook refused,
    /// so that their requests cost the store exactly what an accepted one costs.
    pub fn unguessable() -> CodeMac {
        let mut b = [0u8; CODE_MAC_LEN];
        rand::rng().fill(&mut b);
        CodeMac(b)
    }
}

impl fmt::Debug for CodeMac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodeMac(***)")
    }
}

/// The keyed hash of a normalized address: the only form of an address that reaches the
/// store and the logs. 128 bits, base64url (22 characters).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct AddressKey(String);

impl AddressKey {
    /// The encoded hash, ready for a key name or a log field.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A key no address hashes to (it is not base64url), for a store's readiness probe.
    pub fn probe() -> AddressKey {
        AddressKey("ready?".to_owned())
    }
}

impl fmt::Display for AddressKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for AddressKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AddressKey({})", self.0)
    }
}

/// A short keyed hash in a store: 72 bits, base64url (12 ASCII characters).
macro_rules! short_key {
    ($(#[$attr:meta])* $name:ident) => {
        $(#[$attr])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name([u8; 12]);

        impl $name {
            /// The encoded hash, as the store keeps it.
            pub fn as_str(&self) -> &str {
                // Built only from base64url output or checked by `parse`: ASCII.
                std::str::from_utf8(&self.0).unwrap_or("")
            }

            /// Reads a stored key back; `None` unless it is 12 base64url characters.
            pub fn parse(s: &str) -> Option<$name> {
                let b: [u8; 12] = s.as_bytes().try_into().ok()?;
                b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
                    .then_some($name(b))
            }

            fn from_mac(full: &[u8; 32]) -> $name {
                let mut out = [0u8; 12];
                out.copy_from_slice(URL_SAFE_NO_PAD.encode(&full[..9]).as_bytes());
                $name(out)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.as_str())
            }
        }
    };
}

short_key! {
    /// The store's name for one login flow: a keyed hash of the flow's id (the id, which
    /// the browser holds, never reaches the store) or, for a signed-in user's codes, of
    /// the session.
    FlowKey
}

short_key! {
    /// The store's name for one known device: a keyed hash of the device's id.
    DeviceKey
}

/// The rate-limit bucket of a client IP: the address itself for IPv4, its /64 network for
/// IPv6 (one host usually holds a whole /64, so limiting single IPv6 addresses limits
/// nothing).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IpKey(String);

impl IpKey {
    /// Buckets `ip`.
    pub fn new(ip: IpAddr) -> IpKey {
        let ip = match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let s = v6.segments();
                    return IpKey(format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3]));
                }
            },
            v4 => v4,
        };
        IpKey(ip.to_string())
    }

    /// The bucket as text, for a key name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for IpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IpKey({})", self.0)
    }
}

/// What a code was sent for; part of its MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose<'a> {
    /// Signing in.
    Login,
    /// A signed-in user proving the address again: bound to the user.
    Reauthentication {
        /// The user's subject.
        subject: &'a str,
    },
    /// A signed-in user proving a new address: bound to the user.
    EmailChange {
        /// The user's subject.
        subject: &'a str,
    },
}

/// Holds the code secret and derives the keyed hashes from it.
pub(crate) struct CodeHasher {
    key: SecretSlice<u8>,
}

impl fmt::Debug for CodeHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodeHasher { key: *** }")
    }
}

impl CodeHasher {
    /// A hasher under `secret` (at least 32 bytes; checked by the configuration).
    pub(crate) fn new(secret: &[u8]) -> CodeHasher {
        CodeHasher {
            key: SecretSlice::from(secret.to_vec()),
        }
    }

    fn mac(&self, domain: &[u8], parts: &[&[u8]]) -> [u8; 32] {
        // HMAC accepts keys of any length; `new_from_slice` cannot fail for HMAC.
        let Ok(mut mac) = HmacSha256::new_from_slice(self.key.expose_secret()) else {
            unreachable!("HMAC takes keys of every length")
        };
        mac.update(domain);
        for p in parts {
            // Length-prefix each part so that ("ab","c") and ("a","bc") differ.
            mac.update(&(p.len() as u32).to_be_bytes());
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }

    /// The store key of an address.
    pub(crate) fn address_key(&self, email: &Email) -> AddressKey {
        let full = self.mac(b"otp-auth/address/v1", &[email.as_str().as_bytes()]);
        AddressKey(URL_SAFE_NO_PAD.encode(&full[..16]))
    }

    /// The MAC of `code` sent to `email` for `purpose`: a code is only good for the
    /// address it went to and the purpose it was sent for (a login code never passes for a
    /// re-authentication, nor an email change code for another user).
    pub(crate) fn code_mac(&self, purpose: Purpose<'_>, email: &Email, code: &Code) -> CodeMac {
        let (email, code) = (email.as_str().as_bytes(), code.expose().as_bytes());
        // A login code keeps the two-part form, so codes pending across an upgrade still
        // verify; the other purposes add parts, which the length prefixes keep apart.
        let full = match purpose {
            Purpose::Login => self.mac(b"otp-auth/code/v1", &[email, code]),
            Purpose::Reauthentication { subject } => self.mac(
                b"otp-auth/code/v1",
                &[email, code, b"reauthentication", subject.as_bytes()],
            ),
            Purpose::EmailChange { subject } => self.mac(
                b"otp-auth/code/v1",
                &[email, code, b"email-change", subject.as_bytes()],
            ),
        };
        let mut out = [0u8; CODE_MAC_LEN];
        out.copy_from_slice(&full[..CODE_MAC_LEN]);
        CodeMac(out)
    }

    /// The store key of the login flow whose id is `flow_id`.
    pub(crate) fn flow_key(&self, flow_id: &str) -> FlowKey {
        FlowKey::from_mac(&self.mac(b"otp-auth/flow/v1", &[flow_id.as_bytes()]))
    }

    /// The store key of the flow of a signed-in user's codes: its session.
    pub(crate) fn session_flow_key(&self, sid: &str) -> FlowKey {
        FlowKey::from_mac(&self.mac(b"otp-auth/session-flow/v1", &[sid.as_bytes()]))
    }

    /// The store key of the device whose id is `device_id`.
    pub(crate) fn device_key(&self, device_id: &str) -> DeviceKey {
        DeviceKey::from_mac(&self.mac(b"otp-auth/device/v1", &[device_id.as_bytes()]))
    }

    /// The MAC binding a device cookie to an address: its id, when it was set, and the
    /// address's key (the cookie never holds the address).
    pub(crate) fn device_mac(&self, device_id: &str, since: u64, address: &AddressKey) -> [u8; 16] {
        let full = self.mac(
            b"otp-auth/device-binding/v1",
            &[
                device_id.as_bytes(),
                &since.to_be_bytes(),
                address.as_str().as_bytes(),
            ],
        );
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }

    /// The key of a subject's session index: its sessions are listed and revoked together
    /// without the subject (often an address) appearing in a key name.
    pub(crate) fn subject_key(&self, subject: &str) -> String {
        let full = self.mac(b"otp-auth/subject/v1", &[subject.as_bytes()]);
        URL_SAFE_NO_PAD.encode(&full[..16])
    }
}

/// Derives the code secret from the JWT secret when no code secret is configured, so the
/// two keys are never the same bytes.
pub(crate) fn derive_code_secret(jwt_secret: &[u8]) -> Vec<u8> {
    let Ok(mut mac) = HmacSha256::new_from_slice(jwt_secret) else {
        unreachable!("HMAC takes keys of every length")
    };
    mac.update(b"otp-auth/code-secret-from-jwt-secret/v1");
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hasher() -> CodeHasher {
        CodeHasher::new(&[7u8; 32])
    }

    #[test]
    fn generated_codes_have_the_configured_length_and_digits_only() {
        for len in 6..=10u8 {
            for _ in 0..200 {
                let c = Code::generate(len);
                assert_eq!(c.expose().len(), usize::from(len));
                assert!(c.expose().bytes().all(|b| b.is_ascii_digit()));
            }
        }
    }

    #[test]
    fn digits_are_uniform_and_leading_zeros_kept() {
        // 60_000 codes × 6 digits: each digit value per position ~6000 times; a bias as small
        // as `% 10` on a byte (values 0..=5 get 26/256 instead of 25.6/256) would not show,
        // but a broken generator (fixed digit, no zeros, a constant) fails by far.
        let mut counts = [[0u32; 10]; 6];
        let mut leading_zero = 0;
        let mut distinct = std::collections::HashSet::new();
        for _ in 0..60_000 {
            let c = Code::generate(6);
            for (i, b) in c.expose().bytes().enumerate() {
                counts[i][usize::from(b - b'0')] += 1;
            }
            if c.expose().starts_with('0') {
                leading_zero += 1;
            }
            distinct.insert(c.expose().to_owned());
        }
        for pos in counts {
            for n in pos {
                assert!((5400..=6600).contains(&n), "digit count {n} out of range");
            }
        }
        assert!(leading_zero > 5000, "leading zeros dropped: {leading_zero}");
        assert!(
            distinct.len() > 55_000,
            "too many repeats: {}",
            distinct.len()
        );
    }

    #[test]
    fn parse_accepts_exactly_n_ascii_digits() {
        assert!(Code::parse("012345", 6).is_some());
        for bad in [
            "12345",
            "1234567",
            "12345a",
            " 12345",
            "١٢٣٤٥٦",
            "12 345",
            "+12345",
            "",
        ] {
            assert!(Code::parse(bad, 6).is_none(), "{bad}");
        }
    }

    #[test]
    fn mac_is_bound_to_address_and_key() {
        let h = hasher();
        let a = Email::parse("a@example.com").unwrap();
        let b = Email::parse("b@example.com").unwrap();
        let code = Code::parse("123456", 6).unwrap();
        assert!(h.code_mac(Purpose::Login, &a, &code).ct_eq(&h.code_mac(
            Purpose::Login,
            &a,
            &code
        )));
        assert!(!h.code_mac(Purpose::Login, &a, &code).ct_eq(&h.code_mac(
            Purpose::Login,
            &b,
            &code
        )));
        let other_key = CodeHasher::new(&[8u8; 32]);
        assert!(
            !h.code_mac(Purpose::Login, &a, &code)
                .ct_eq(&other_key.code_mac(Purpose::Login, &a, &code))
        );
        let other_code = Code::parse("123457", 6).unwrap();
        assert!(!h.code_mac(Purpose::Login, &a, &code).ct_eq(&h.code_mac(
            Purpose::Login,
            &a,
            &other_code
        )));
    }

    #[test]
    fn mac_is_bound_to_purpose_and_user() {
        let h = hasher();
        let a = Email::parse("a@example.com").unwrap();
        let code = Code::parse("123456", 6).unwrap();
        let macs = [
            h.code_mac(Purpose::Login, &a, &code),
            h.code_mac(Purpose::Reauthentication { subject: "u1" }, &a, &code),
            h.code_mac(Purpose::Reauthentication { subject: "u2" }, &a, &code),
            h.code_mac(Purpose::EmailChange { subject: "u1" }, &a, &code),
            h.code_mac(Purpose::EmailChange { subject: "u2" }, &a, &code),
        ];
        for (i, x) in macs.iter().enumerate() {
            for (j, y) in macs.iter().enumerate() {
                assert_eq!(x.ct_eq(y), i == j, "{i} {j}");
            }
        }
    }

    #[test]
    fn address_key_hides_the_address() {
        let h = hasher();
        let a = Email::parse("alice@example.com").unwrap();
        let k = h.address_key(&a);
        assert_eq!(k.as_str().len(), 22);
        assert!(!k.as_str().contains("alice"));
        assert_eq!(
            k,
            h.address_key(&Email::parse("ALICE@example.COM").unwrap())
        );
    }

    #[test]
    fn ipv6_is_bucketed_by_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(IpKey::new(a), IpKey::new(b));
        assert_ne!(IpKey::new(a), IpKey::new(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(IpKey::new(mapped).as_str(), "192.0.2.1");
    }

    #[test]
    fn debug_never_shows_secrets() {
        let c = Code::parse("424242", 6).unwrap();
        assert!(!format!("{c:?}").contains("4242"));
        assert!(!format!("{:?}", hasher()).contains('7'));
    }

    proptest! {
        #[test]
        fn parsed_codes_roundtrip(digits in "[0-9]{6,10}") {
            let len = digits.len() as u8;
            let c = Code::parse(&digits, len).expect("digits parse");
            prop_assert_eq!(c.expose(), digits.as_str());
        }

        /// Six bytes, all digits but one: the length check passes, so the digit check is
        /// what refuses (any ASCII non-digit, control bytes included, at any position).
        #[test]
        fn non_digit_codes_are_refused(
            digits in "[0-9]{5}",
            bad in "[\\x00-\\x2f\\x3a-\\x7f]",
            at in 0_usize..6,
        ) {
            let mut s = digits.clone();
            s.insert_str(at, &bad);
            prop_assert_eq!(s.len(), 6);
            prop_assert!(Code::parse(&s, 6).is_none(), "{:?}", s);
        }

        /// Digits of other scripts (two bytes each in UTF-8: Arabic-Indic, Extended Arabic-Indic)
        /// whose byte length matches are refused too.
        #[test]
        fn non_ascii_digits_are_refused(s in "[٠-٩۰-۹]{3}") {
            prop_assert_eq!(s.len(), 6);
            prop_assert!(Code::parse(&s, 6).is_none());
        }
    }
}
