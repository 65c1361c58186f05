//! Public JSON Web Keys (RFC 7517) of the asymmetric token keys, their RFC 7638 thumbprints
//! (the `kid` of the tokens), and the loading of the PEM key files behind them.
//!
//! Only public parameters ever leave this module: [`PublicJwk`] holds no private value, and
//! errors describe a key file without quoting it.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _, EncodePrivateKey as _};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use rsa::pkcs1::{DecodeRsaPrivateKey as _, DecodeRsaPublicKey as _, EncodeRsaPrivateKey as _};
use rsa::traits::PublicKeyParts as _;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::config::TokenSettings;

/// Smallest RSA modulus accepted, in bits (RFC 7518 3.3 requires 2048).
pub(crate) const RSA_MIN_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits (the verifier's limit).
pub(crate) const RSA_MAX_BITS: usize = 4096;

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_ED25519: &str = "1.3.101.112";

/// The public half of an asymmetric signing key, as published in the JWKS.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum PublicJwk {
    /// An RSA key (`kty` `RSA`).
    Rsa {
        /// The modulus, big-endian.
        n: Vec<u8>,
        /// The public exponent, big-endian.
        e: Vec<u8>,
    },
    /// A NIST P-256 key (`kty` `EC`, `crv` `P-256`).
    P256 {
        /// The affine x coordinate, big-endian.
        x: [u8; 32],
        /// The affine y coordinate, big-endian.
        y: [u8; 32],
    },
    /// An Ed25519 key (`kty` `OKP`, `crv` `Ed25519`).
    Ed25519 {
        /// The public key bytes.
        x: [u8; 32],
    },
}

impl PublicJwk {
    /// The JWK `kty` of this key.
    pub(crate) fn kty(&self) -> &'static str {
        match self {
            PublicJwk::Rsa { .. } => "RSA",
            PublicJwk::P256 { .. } => "EC",
            PublicJwk::Ed25519 { .. } => "OKP",
        }
    }

    /// The JWS algorithm this key signs with (`RS256`, `ES256` or `EdDSA`).
    pub(crate) fn algorithm_name(&self) -> &'static str {
        match self {
            PublicJwk::Rsa { .. } => "RS256",
            PublicJwk::P256 { .. } => "ES256",
            PublicJwk::Ed25519 { .. } => "EdDSA",
        }
    }

    /// The RFC 7638 thumbprint: SHA-256 of the required members in lexicographic order,
    /// without whitespace, base64url without padding. Used as the `kid`.
    pub(crate) fn thumbprint(&self) -> String {
        // The member values are base64url or fixed names, which JSON never escapes.
        let canonical = match self {
            PublicJwk::Rsa { n, e } => format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                b64(unsigned(e)),
                b64(unsigned(n))
            ),
            PublicJwk::P256 { x, y } => format!(
                r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                b64(x),
                b64(y)
            ),
            PublicJwk::Ed25519 { x } => {
                format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, b64(x))
            }
        };
        b64(&Sha256::digest(canonical.as_bytes()))
    }

    /// The JWK of this key for a JWKS: `kty`, `use` `sig`, `alg`, `kid` (the thumbprint)
    /// and the public parameters only.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let mut jwk = json!({
            "kty": self.kty(),
            "use": "sig",
            "alg": self.algorithm_name(),
            "kid": self.thumbprint(),
        });
        let params = match self {
            PublicJwk::Rsa { n, e } => json!({"n": b64(unsigned(n)), "e": b64(unsigned(e))}),
            PublicJwk::P256 { x, y } => json!({"crv": "P-256", "x": b64(x), "y": b64(y)}),
            PublicJwk::Ed25519 { x } => json!({"crv": "Ed25519", "x": b64(x)}),
        };
        if let (Some(jwk), serde_json::Value::Object(params)) = (jwk.as_object_mut(), params) {
            jwk.extend(params);
        }
        jwk
    }

    /// The jsonwebtoken verification key of this public key.
    pub(crate) fn decoding_key(&self) -> DecodingKey {
        match self {
            PublicJwk::Rsa { n, e } => {
                DecodingKey::from_rsa_raw_components(unsigned(n), unsigned(e))
            }
            PublicJwk::P256 { x, y } => {
                // An uncompressed SEC1 point, which is what the ES256 verifier reads.
                let mut point = Vec::with_capacity(65);
                point.push(0x04);
                point.extend_from_slice(x);
                point.extend_from_slice(y);
                DecodingKey::from_ec_der(&point)
            }
            PublicJwk::Ed25519 { x } => DecodingKey::from_ed_der(x),
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A big-endian unsigned integer without leading zero octets (RFC 7518 6.3.1).
fn unsigned(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(bytes.len().saturating_sub(1));
    bytes.get(start..).unwrap_or(bytes)
}

/// What a configured algorithm needs, for error messages.
fn wanted(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::RS256 => "an RSA key",
        Algorithm::ES256 => "an EC key on the P-256 curve",
        Algorithm::EdDSA => "an Ed25519 key",
        _ => "an asymmetric key",
    }
}

/// Names the key type of a PKCS#8 or SPKI algorithm identifier.
fn describe(oid: &str, curve: Option<&str>) -> &'static str {
    match (oid, curve) {
        (OID_RSA, _) => "an RSA key",
        (OID_EC, Some(OID_P256)) => "a P-256 EC key",
        (OID_EC, _) => "an EC key on another curve than P-256",
        (OID_ED25519, _) => "an Ed25519 key",
        ("1.3.101.113", _) => "an Ed448 key",
        _ => "a key of an unsupported type",
    }
}

fn mismatch(alg: Algorithm, found: &str) -> String {
    format!(
        "holds {found}, but {} {alg:?} needs {}",
        TokenSettings::VARS.algorithm,
        wanted(alg)
    )
}

/// One PEM block: its label and decoded contents (wiped on drop).
struct PemBlock {
    label: String,
    der: Zeroizing<Vec<u8>>,
}

/// Splits PEM text into its blocks (RFC 7468), ignoring text between them.
fn pem_blocks(text: &[u8]) -> Result<Vec<PemBlock>, String> {
    let text = std::str::from_utf8(text).map_err(|_| "is not a PEM text file".to_owned())?;
    let mut blocks = Vec::new();
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut body = Zeroizing::new(String::new());
        let mut closed = false;
        for line in lines.by_ref() {
            if line == end {
                closed = true;
                break;
            }
            if line.contains(':') {
                return Err(format!(
                    "has a PEM header in its {label} block (an encrypted legacy key?); \
                     give an unencrypted key (`openssl pkey -in old.pem -out new.pem`)"
                ));
            }
            body.push_str(line);
        }
        if !closed {
            return Err(format!("has a {label} PEM block without its END line"));
        }
        let der = STANDARD
            .decode(body.as_bytes())
            .map(Zeroizing::new)
            .map_err(|_| format!("has a {label} PEM block that is not valid base64"))?;
        blocks.push(PemBlock {
            label: label.to_owned(),
            der,
        });
    }
    Ok(blocks)
}

/// Picks the one block with a label in `wanted`.
fn single_block<'a>(
    blocks: &'a [PemBlock],
    labels: &[&str],
    what: &str,
) -> Result<&'a PemBlock, String> {
    let mut found = blocks.iter().filter(|b| labels.contains(&b.label.as_str()));
    match (found.next(), found.next()) {
        (Some(block), None) => Ok(block),
        (Some(_), Some(_)) => Err(format!("holds more than one {what}; give one per file")),
        (None, _) => Err(format!(
            "holds no PEM {what} (expected a `BEGIN {}` block)",
            labels.first().copied().unwrap_or_default()
        )),
    }
}

/// A private signing key loaded from PEM: the jsonwebtoken signing key and its public JWK.
pub(crate) struct LoadedPrivateKey {
    pub(crate) encoding: EncodingKey,
    pub(crate) public: PublicJwk,
}

const PRIVATE_LABELS: &[&str] = &[
    "PRIVATE KEY",
    "RSA PRIVATE KEY",
    "EC PRIVATE KEY",
    "ENCRYPTED PRIVATE KEY",
    "OPENSSH PRIVATE KEY",
];
const PUBLIC_LABELS: &[&str] = &["PUBLIC KEY", "RSA PUBLIC KEY"];

/// Loads the private key of `alg` (`RS256`, `ES256` or `EdDSA`) from PEM: PKCS#8
/// (`BEGIN PRIVATE KEY`) for all three, PKCS#1 (`BEGIN RSA PRIVATE KEY`) for RSA and SEC1
/// (`BEGIN EC PRIVATE KEY`) for P-256. The error is a reason, to follow the file's name.
pub(crate) fn load_private_key(alg: Algorithm, pem: &[u8]) -> Result<LoadedPrivateKey, String> {
    let blocks = pem_blocks(pem)?;
    let block = match single_block(&blocks, PRIVATE_LABELS, "private key") {
        Err(_) if single_block(&blocks, PUBLIC_LABELS, "public key").is_ok() => {
            return Err("holds a public key, not the private signing key".to_owned());
        }
        other => other?,
    };
    let der: &[u8] = &block.der;
    check_private_label(alg, &block.label, der)?;
    let pkcs8 = block.label == "PRIVATE KEY";
    match alg {
        Algorithm::RS256 => rsa_private(der, pkcs8),
        Algorithm::ES256 => p256_private(der, pkcs8),
        Algorithm::EdDSA => ed25519_private(der),
        other => Err(format!("{other:?} is not an asymmetric algorithm")),
    }
}

/// Refuses a private key block whose kind does not fit `alg`: encrypted and OpenSSH keys,
/// an RSA or EC block for another algorithm, a PKCS#8 key of another algorithm or curve.
fn check_private_label(alg: Algorithm, label: &str, der: &[u8]) -> Result<(), String> {
    match label {
        "ENCRYPTED PRIVATE KEY" | "OPENSSH PRIVATE KEY" => Err(format!(
            "holds an {}, which is not supported; convert it to an unencrypted PKCS#8 \
             PEM key (`openssl pkey -in old.pem -out new.pem`)",
            label.to_lowercase()
        )),
        "RSA PRIVATE KEY" if alg != Algorithm::RS256 => Err(mismatch(alg, "an RSA key")),
        "EC PRIVATE KEY" if alg != Algorithm::ES256 => Err(mismatch(alg, "an EC key")),
        "PRIVATE KEY" => {
            let info = rsa::pkcs8::PrivateKeyInfo::try_from(der)
                .map_err(|e| format!("is not a valid PKCS#8 private key ({e})"))?;
            let oid = info.algorithm.oid.to_string();
            let curve = info.algorithm.parameters_oid().ok().map(|c| c.to_string());
            let expected = match alg {
                Algorithm::RS256 => oid == OID_RSA,
                Algorithm::ES256 => oid == OID_EC && curve.as_deref() == Some(OID_P256),
                Algorithm::EdDSA => oid == OID_ED25519,
                _ => false,
            };
            if expected {
                Ok(())
            } else {
                Err(mismatch(alg, describe(&oid, curve.as_deref())))
            }
        }
        _ => Ok(()),
    }
}

/// An RSA private key from PKCS#8 or PKCS#1 DER, checked for consistency.
fn rsa_private(der: &[u8], pkcs8: bool) -> Result<LoadedPrivateKey, String> {
    let key = if pkcs8 {
        rsa::RsaPrivateKey::from_pkcs8_der(der)
            .map_err(|e| format!("is not a valid RSA private key ({e})"))?
    } else {
        rsa::RsaPrivateKey::from_pkcs1_der(der)
            .map_err(|e| format!("is not a valid PKCS#1 RSA private key ({e})"))?
    };
    key.validate()
        .map_err(|_| "is not a consistent RSA private key".to_owned())?;
    let public = rsa_public(key.n(), key.e())?;
    let pkcs1 = key
        .to_pkcs1_der()
        .map_err(|e| format!("could not be re-encoded as PKCS#1 ({e})"))?;
    Ok(LoadedPrivateKey {
        encoding: EncodingKey::from_rsa_der(pkcs1.as_bytes()),
        public,
    })
}

/// A P-256 private key from PKCS#8 or SEC1 DER.
fn p256_private(der: &[u8], pkcs8: bool) -> Result<LoadedPrivateKey, String> {
    let key = if pkcs8 {
        p256::SecretKey::from_pkcs8_der(der)
            .map_err(|e| format!("is not a valid P-256 private key ({e})"))?
    } else {
        p256::SecretKey::from_sec1_der(der).map_err(|_| {
            format!(
                "is not a valid SEC1 private key on the P-256 curve ({} ES256 needs \
                 a P-256 key)",
                TokenSettings::VARS.algorithm
            )
        })?
    };
    let public = p256_public(&key.public_key())?;
    let pkcs8_der = key
        .to_pkcs8_der()
        .map_err(|e| format!("could not be re-encoded as PKCS#8 ({e})"))?;
    Ok(LoadedPrivateKey {
        encoding: EncodingKey::from_ec_der(pkcs8_der.as_bytes()),
        public,
    })
}

/// An Ed25519 private key from PKCS#8 DER.
fn ed25519_private(der: &[u8]) -> Result<LoadedPrivateKey, String> {
    let key = ed25519_dalek::SigningKey::from_pkcs8_der(der)
        .map_err(|e| format!("is not a valid Ed25519 private key ({e})"))?;
    let public = PublicJwk::Ed25519 {
        x: key.verifying_key().to_bytes(),
    };
    let pkcs8_der = key
        .to_pkcs8_der()
        .map_err(|e| format!("could not be re-encoded as PKCS#8 ({e})"))?;
    Ok(LoadedPrivateKey {
        encoding: EncodingKey::from_ed_der(pkcs8_der.as_bytes()),
        public,
    })
}

/// Loads the public key of `alg` from PEM: SPKI (`BEGIN PUBLIC KEY`) for all three, PKCS#1
/// (`BEGIN RSA PUBLIC KEY`) for RSA. The error is a reason, to follow the file's name.
pub(crate) fn load_public_key(alg: Algorithm, pem: &[u8]) -> Result<PublicJwk, String> {
    let blocks = pem_blocks(pem)?;
    let block = match single_block(&blocks, PUBLIC_LABELS, "public key") {
        Err(_) if single_block(&blocks, PRIVATE_LABELS, "private key").is_ok() => {
            return Err("holds a private key; give only the public key \
                        (`openssl pkey -in old.pem -pubout -out old.pub.pem`)"
                .to_owned());
        }
        other => other?,
    };
    let der: &[u8] = &block.der;
    if block.label == "RSA PUBLIC KEY" {
        if alg != Algorithm::RS256 {
            return Err(mismatch(alg, "an RSA key"));
        }
        let key = rsa::RsaPublicKey::from_pkcs1_der(der)
            .map_err(|e| format!("is not a valid PKCS#1 RSA public key ({e})"))?;
        return rsa_public(key.n(), key.e());
    }
    let info = rsa::pkcs8::spki::SubjectPublicKeyInfoRef::try_from(der)
        .map_err(|e| format!("is not a valid SPKI public key ({e})"))?;
    let oid = info.algorithm.oid.to_string();
    let curve = info.algorithm.parameters_oid().ok().map(|c| c.to_string());
    match (alg, describe(&oid, curve.as_deref())) {
        (Algorithm::RS256, "an RSA key") => {
            let key = rsa::RsaPublicKey::from_public_key_der(der)
                .map_err(|e| format!("is not a valid RSA public key ({e})"))?;
            rsa_public(key.n(), key.e())
        }
        (Algorithm::ES256, "a P-256 EC key") => {
            let key = p256::PublicKey::from_public_key_der(der)
                .map_err(|e| format!("is not a valid P-256 public key ({e})"))?;
            p256_public(&key)
        }
        (Algorithm::EdDSA, "an Ed25519 key") => {
            let key = ed25519_dalek::VerifyingKey::from_public_key_der(der)
                .map_err(|e| format!("is not a valid Ed25519 public key ({e})"))?;
            Ok(PublicJwk::Ed25519 { x: key.to_bytes() })
        }
        (_, found) => Err(mismatch(alg, found)),
    }
}

fn rsa_public(n: &rsa::BigUint, e: &rsa::BigUint) -> Result<PublicJwk, String> {
    let bits = n.bits();
    if bits < RSA_MIN_BITS {
        return Err(format!(
            "holds a {bits}-bit RSA key; at least {RSA_MIN_BITS} bits are required"
        ));
    }
    if bits > RSA_MAX_BITS {
        return Err(format!(
            "holds a {bits}-bit RSA key; at most {RSA_MAX_BITS} bits are supported"
        ));
    }
    Ok(PublicJwk::Rsa {
        n: n.to_bytes_be(),
        e: e.to_bytes_be(),
    })
}

fn p256_public(key: &p256::PublicKey) -> Result<PublicJwk, String> {
    let point = key.to_encoded_point(false);
    match (point.x(), point.y()) {
        (Some(x), Some(y)) => Ok(PublicJwk::P256 {
            x: (*x).into(),
            y: (*y).into(),
        }),
        _ => Err("holds the P-256 point at infinity".to_owned()),
    }
}

/// Reads a key file named by the setting `var`, the error naming both and never the contents.
pub(crate) fn read_key_file(
    var: &str,
    path: &str,
) -> Result<Zeroizing<Vec<u8>>, crate::config::ConfigError> {
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|e| crate::config::ConfigError::one(format!("{var} {path:?} cannot be read: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/testdata/keys/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn rfc7638_rsa_thumbprint() {
        // RFC 7638 section 3.1.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6\
                 tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ\
                 5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbIS\
                 D08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-k\
                 EgU8awapJzKnqDKgw";
        let jwk = PublicJwk::Rsa {
            n: URL_SAFE_NO_PAD.decode(n).unwrap(),
            e: URL_SAFE_NO_PAD.decode("AQAB").unwrap(),
        };
        assert_eq!(
            jwk.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        // Leading zero octets do not change the key nor its thumbprint.
        let PublicJwk::Rsa { n, e } = &jwk else {
            unreachable!()
        };
        let padded = PublicJwk::Rsa {
            n: [&[0u8][..], n].concat(),
            e: [&[0u8, 0][..], e].concat(),
        };
        assert_eq!(padded.thumbprint(), jwk.thumbprint());
        assert_eq!(padded.to_json()["e"], "AQAB");
    }

    #[test]
    fn rfc8037_ed25519_thumbprint() {
        // RFC 8037 appendix A.3.
        let x = URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        let jwk = PublicJwk::Ed25519 {
            x: x.try_into().unwrap(),
        };
        assert_eq!(
            jwk.thumbprint(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn thumbprints_match_jsonwebtoken() {
        // jsonwebtoken's own RFC 7638 code, on the published JWK, agrees with ours.
        for (alg, name) in [
            (Algorithm::RS256, "rsa-a.pub.pem"),
            (Algorithm::ES256, "ec-a.pub.pem"),
            (Algorithm::EdDSA, "ed25519-a.pub.pem"),
        ] {
            let ours = load_public_key(alg, &fixture(name)).unwrap();
            let theirs: jsonwebtoken::jwk::Jwk = serde_json::from_value(ours.to_json()).unwrap();
            assert_eq!(
                theirs.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256),
                ours.thumbprint(),
                "{name}"
            );
        }
    }

    #[test]
    fn private_and_public_files_agree() {
        for (alg, private, public) in [
            (Algorithm::RS256, "rsa-a.pem", "rsa-a.pub.pem"),
            (Algorithm::RS256, "rsa-a.pkcs1.pem", "rsa-a.pkcs1.pub.pem"),
            (Algorithm::RS256, "rsa-a.pem", "rsa-a.pkcs1.pub.pem"),
            (Algorithm::ES256, "ec-a.pem", "ec-a.pub.pem"),
            (Algorithm::ES256, "ec-a.sec1.pem", "ec-a.pub.pem"),
            (Algorithm::EdDSA, "ed25519-a.pem", "ed25519-a.pub.pem"),
        ] {
            let loaded = load_private_key(alg, &fixture(private)).unwrap();
            let public_jwk = load_public_key(alg, &fixture(public)).unwrap();
            assert_eq!(loaded.public, public_jwk, "{private} vs {public}");
            assert_eq!(loaded.public.algorithm_name(), format!("{alg:?}"));
        }
    }

    #[test]
    fn published_jwks_hold_public_parameters_only() {
        for (alg, name, members) in [
            (
                Algorithm::RS256,
                "rsa-a.pem",
                &["kty", "use", "alg", "kid", "n", "e"][..],
            ),
            (
                Algorithm::ES256,
                "ec-a.pem",
                &["kty", "use", "alg", "kid", "crv", "x", "y"][..],
            ),
            (
                Algorithm::EdDSA,
                "ed25519-a.pem",
                &["kty", "use", "alg", "kid", "crv", "x"][..],
            ),
        ] {
            let jwk = load_private_key(alg, &fixture(name))
                .unwrap()
                .public
                .to_json();
            let object = jwk.as_object().unwrap();
            let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
            keys.sort_unstable();
            let mut expected = members.to_vec();
            expected.sort_unstable();
            assert_eq!(keys, expected, "{name}");
            assert_eq!(jwk["use"], "sig");
            assert_eq!(jwk["alg"], format!("{alg:?}"));
        }
    }

    #[test]
    fn pem_edge_cases() {
        // The EC PARAMETERS block `openssl ecparam -genkey` writes first is skipped.
        let sec1 = String::from_utf8(fixture("ec-a.sec1.pem")).unwrap();
        let with_params = format!(
            "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n{sec1}"
        );
        assert!(load_private_key(Algorithm::ES256, with_params.as_bytes()).is_ok());

        let two = [fixture("ec-a.pem"), fixture("ec-b.pem")].concat();
        let err = load_private_key(Algorithm::ES256, &two).err().unwrap();
        assert!(err.contains("more than one"), "{err}");

        let err = load_private_key(Algorithm::ES256, b"not a key")
            .err()
            .unwrap();
        assert!(err.contains("no PEM private key"), "{err}");

        let truncated = String::from_utf8(fixture("ec-a.pem")).unwrap();
        let truncated = truncated.lines().take(2).collect::<Vec<_>>().join("\n");
        let err = load_private_key(Algorithm::ES256, truncated.as_bytes())
            .err()
            .unwrap();
        assert!(err.contains("without its END"), "{err}");

        let encrypted =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let err = load_private_key(Algorithm::ES256, encrypted.as_bytes())
            .err()
            .unwrap();
        assert!(err.contains("not supported"), "{err}");

        let err = load_private_key(Algorithm::ES256, &fixture("ec-a.pub.pem"))
            .err()
            .unwrap();
        assert!(err.contains("holds a public key"), "{err}");
        let err = load_public_key(Algorithm::ES256, &fixture("ec-a.pem"))
            .err()
            .unwrap();
        assert!(err.contains("holds a private key"), "{err}");
    }

    #[test]
    fn wrong_key_types_are_refused() {
        for (alg, name, found) in [
            (Algorithm::ES256, "rsa-a.pem", "an RSA key"),
            (Algorithm::ES256, "rsa-a.pkcs1.pem", "an RSA key"),
            (Algorithm::ES256, "ed25519-a.pem", "an Ed25519 key"),
            (Algorithm::ES256, "ec-p384.pem", "another curve"),
            (Algorithm::RS256, "ec-a.pem", "a P-256 EC key"),
            (Algorithm::RS256, "ec-a.sec1.pem", "an EC key"),
            (Algorithm::RS256, "rsa-1024.pem", "1024-bit"),
            (Algorithm::EdDSA, "rsa-a.pem", "an RSA key"),
            (Algorithm::EdDSA, "ec-a.pem", "a P-256 EC key"),
        ] {
            let err = load_private_key(alg, &fixture(name)).err().unwrap();
            assert!(err.contains(found), "{alg:?} {name}: {err}");
        }
        for (alg, name, found) in [
            (Algorithm::ES256, "rsa-a.pub.pem", "an RSA key"),
            (Algorithm::ES256, "rsa-a.pkcs1.pub.pem", "an RSA key"),
            (Algorithm::RS256, "ec-a.pub.pem", "a P-256 EC key"),
            (Algorithm::RS256, "ed25519-a.pub.pem", "an Ed25519 key"),
            (Algorithm::EdDSA, "ec-a.pub.pem", "a P-256 EC key"),
        ] {
            let err = load_public_key(alg, &fixture(name)).err().unwrap();
            assert!(err.contains(found), "{alg:?} {name}: {err}");
        }
    }
}
