//! JWT access and refresh tokens: issue and verify.
//!
//! Both kinds carry `sub`, `email`, `jti` (128 random bits), `sid` (the session), `iat`,
//! `exp`, a `type` claim, and `iss`/`aud` when configured. They differ in the header `typ`
//! (`at+jwt` for access, `refresh+jwt` for refresh) and in the `type` claim, and each check
//! insists on both, so neither can stand in for the other (RFC 8725 3.11).

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, Header};
#[cfg(feature = "asymmetric")]
use jsonwebtoken::{DecodingKey, EncodingKey};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use secrecy::ExposeSecret as _;

use crate::config::{Config, JwtAlgorithm, TokenSettings};
use crate::error::TokenRejection;
#[cfg(feature = "asymmetric")]
use crate::jwk::{self, PublicJwk};
use crate::primitives::{now_secs, random_id};

/// Header `typ` of access tokens (RFC 9068).
pub const ACCESS_TYP: &str = "at+jwt";
/// Header `typ` of refresh tokens.
pub const REFRESH_TYP: &str = "refresh+jwt";

/// Which of the two token kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    /// Short-lived bearer token for API calls.
    Access,
    /// Long-lived token in the HttpOnly cookie, exchanged for new tokens at `/refresh`.
    Refresh,
}

impl TokenType {
    fn typ(self) -> &'static str {
        match self {
            TokenType::Access => ACCESS_TYP,
            TokenType::Refresh => REFRESH_TYP,
        }
    }
}

/// The claims of both token kinds.
///
/// Deserialized in one pass: the library's claims into their fields, every other claim
/// into [`Claims::extra`]; a claim given twice is an error.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Claims {
    /// The subject: the user id the hooks mapped the address to (by default the address).
    pub sub: String,
    /// The normalized address the user proved.
    pub email: String,
    /// Access or refresh.
    #[serde(rename = "type")]
    pub token_type: TokenType,
    /// Unique token id, 128 random bits.
    pub jti: String,
    /// The session this token belongs to.
    pub sid: String,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
    /// Expires at (seconds since the epoch).
    pub exp: u64,
    /// Issuer, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// When the user last proved the address (seconds since the epoch; OpenID Connect's
    /// `auth_time`): the login, or the last re-authentication of the session. Access tokens
    /// only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<u64>,
    /// How (RFC 8176 `amr`): `["otp"]` for a code, `["otp", "link"]` for a sign-in link
    /// (which carries the same code). Access tokens only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<String>>,
    /// Claims added by the application's hooks.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl<'de> Deserialize<'de> for Claims {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ClaimsVisitor)
    }
}

/// A claim name: one of the library's, or another one (kept for [`Claims::extra`]).
enum ClaimName {
    Sub,
    Email,
    Type,
    Jti,
    Sid,
    Iat,
    Exp,
    Iss,
    Aud,
    AuthTime,
    Amr,
    Other(String),
}

impl<'de> Deserialize<'de> for ClaimName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl Visitor<'_> for NameVisitor {
            type Value = ClaimName;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a claim name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ClaimName, E> {
                Ok(match v {
                    "sub" => ClaimName::Sub,
                    "email" => ClaimName::Email,
                    "type" => ClaimName::Type,
                    "jti" => ClaimName::Jti,
                    "sid" => ClaimName::Sid,
                    "iat" => ClaimName::Iat,
                    "exp" => ClaimName::Exp,
                    "iss" => ClaimName::Iss,
                    "aud" => ClaimName::Aud,
                    "auth_time" => ClaimName::AuthTime,
                    "amr" => ClaimName::Amr,
                    other => ClaimName::Other(other.to_owned()),
                })
            }
        }
        deserializer.deserialize_identifier(NameVisitor)
    }
}

struct ClaimsVisitor;

impl<'de> Visitor<'de> for ClaimsVisitor {
    type Value = Claims;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JWT claims object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Claims, A::Error> {
        fn once<T, E: de::Error>(slot: &mut Option<T>, v: T, name: &'static str) -> Result<(), E> {
            if slot.replace(v).is_some() {
                return Err(E::duplicate_field(name));
            }
            Ok(())
        }
        let (mut sub, mut email, mut token_type, mut jti, mut sid) = (None, None, None, None, None);
        let (mut iat, mut exp) = (None, None);
        let (mut iss, mut aud): (Option<Option<String>>, Option<Option<String>>) = (None, None);
        let mut auth_time: Option<Option<u64>> = None;
        let mut amr: Option<Option<Vec<String>>> = None;
        let mut extra = serde_json::Map::new();
        while let Some(name) = map.next_key::<ClaimName>()? {
            match name {
                ClaimName::Sub => once(&mut sub, map.next_value()?, "sub")?,
                ClaimName::Email => once(&mut email, map.next_value()?, "email")?,
                ClaimName::Type => once(&mut token_type, map.next_value()?, "type")?,
                ClaimName::Jti => once(&mut jti, map.next_value()?, "jti")?,
                ClaimName::Sid => once(&mut sid, map.next_value()?, "sid")?,
                ClaimName::Iat => once(&mut iat, map.next_value()?, "iat")?,
                ClaimName::Exp => once(&mut exp, map.next_value()?, "exp")?,
                ClaimName::Iss => once(&mut iss, map.next_value()?, "iss")?,
                ClaimName::Aud => once(&mut aud, map.next_value()?, "aud")?,
                ClaimName::AuthTime => once(&mut auth_time, map.next_value()?, "auth_time")?,
                ClaimName::Amr => once(&mut amr, map.next_value()?, "amr")?,
                ClaimName::Other(name) => {
                    let value: serde_json::Value = map.next_value()?;
                    if extra.insert(name, value).is_some() {
                        return Err(de::Error::custom("a claim is given twice"));
                    }
                }
            }
        }
        let missing = de::Error::missing_field;
        Ok(Claims {
            sub: sub.ok_or_else(|| missing("sub"))?,
            email: email.ok_or_else(|| missing("email"))?,
            token_type: token_type.ok_or_else(|| missing("type"))?,
            jti: jti.ok_or_else(|| missing("jti"))?,
            sid: sid.ok_or_else(|| missing("sid"))?,
            iat: iat.ok_or_else(|| missing("iat"))?,
            exp: exp.ok_or_else(|| missing("exp"))?,
            iss: iss.flatten(),
            aud: aud.flatten(),
            auth_time: auth_time.flatten(),
            amr: amr.flatten(),
            extra,
        })
    }
}

/// Claim names the hooks may not set: the library owns them.
pub const RESERVED_CLAIMS: &[&str] = &[
    "sub",
    "email",
    "type",
    "jti",
    "sid",
    "iat",
    "exp",
    "nbf",
    "iss",
    "aud",
    "auth_time",
    "amr",
];

/// A signed token with the claims it was made from.
#[derive(Debug, Clone)]
pub struct SignedToken {
    /// The compact JWT.
    pub token: String,
    /// Its claims.
    pub claims: Claims,
}

/// Signs and verifies tokens under one configured algorithm and key.
///
/// HMAC algorithms use one secret and no key id. The asymmetric ones (`RS256`, `ES256`,
/// `EdDSA`) sign with the current private key and put its RFC 7638 thumbprint in the header
/// `kid`; verification accepts the current key and the previous public keys, selected only
/// by that `kid`, and [`TokenCodec::jwks`] publishes them all.
pub struct TokenCodec {
    algorithm: Algorithm,
    #[cfg(feature = "asymmetric")]
    encoding: EncodingKey,
    /// The base64url JOSE headers of access and refresh tokens (`alg`, `typ`, `kid`).
    headers: [String; 2],
    keys: VerificationKeys,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: u64,
}

/// The keys a token may be verified with.
enum VerificationKeys {
    /// The HMAC secret, keyed once: tokens carry no `kid`.
    Hmac(Box<HmacKey>),
    /// The current public key first, then the previous ones; each by its `kid`.
    #[cfg(feature = "asymmetric")]
    Public(Vec<PublicKey>),
}

/// A keyed HMAC, cloned for each verification (the key schedule is done once).
#[derive(Clone)]
enum HmacKey {
    S256(Hmac<sha2::Sha256>),
    S384(Hmac<sha2::Sha384>),
    S512(Hmac<sha2::Sha512>),
}

impl HmacKey {
    fn new(algorithm: Algorithm, secret: &[u8]) -> Result<HmacKey, crate::config::ConfigError> {
        let bad = |_| crate::config::ConfigError::one(format!("{SECRET_VAR} cannot key an HMAC"));
        Ok(match algorithm {
            Algorithm::HS384 => HmacKey::S384(Hmac::new_from_slice(secret).map_err(bad)?),
            Algorithm::HS512 => HmacKey::S512(Hmac::new_from_slice(secret).map_err(bad)?),
            _ => HmacKey::S256(Hmac::new_from_slice(secret).map_err(bad)?),
        })
    }

    /// The MAC of `message`.
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        fn mac<M: Mac + Clone>(m: &M, message: &[u8]) -> Vec<u8> {
            let mut m = m.clone();
            m.update(message);
            m.finalize().into_bytes().to_vec()
        }
        match self {
            HmacKey::S256(m) => mac(m, message),
            HmacKey::S384(m) => mac(m, message),
            HmacKey::S512(m) => mac(m, message),
        }
    }

    /// Whether `signature` is the MAC of `message`, compared in constant time.
    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        fn check<M: Mac + Clone>(m: &M, message: &[u8], signature: &[u8]) -> bool {
            let mut m = m.clone();
            m.update(message);
            m.verify_slice(signature).is_ok()
        }
        match self {
            HmacKey::S256(m) => check(m, message, signature),
            HmacKey::S384(m) => check(m, message, signature),
            HmacKey::S512(m) => check(m, message, signature),
        }
    }
}

#[cfg(feature = "asymmetric")]
struct PublicKey {
    kid: String,
    jwk: PublicJwk,
    decoding: DecodingKey,
}

#[cfg(feature = "asymmetric")]
impl PublicKey {
    fn new(jwk: PublicJwk) -> PublicKey {
        PublicKey {
            kid: jwk.thumbprint(),
            decoding: jwk.decoding_key(),
            jwk,
        }
    }
}

impl std::fmt::Debug for TokenCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = match &self.keys {
            VerificationKeys::Hmac(_) => Vec::new(),
            #[cfg(feature = "asymmetric")]
            VerificationKeys::Public(keys) => keys.iter().map(|k| k.kid.as_str()).collect(),
        };
        f.debug_struct("TokenCodec")
            .field("algorithm", &self.algorithm)
            .field("kids", &kids)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

const SECRET_VAR: &str = TokenSettings::VARS.secret;
const ALGORITHM_VAR: &str = TokenSettings::VARS.algorithm;
#[cfg(feature = "asymmetric")]
const PRIVATE_KEY_VAR: &str = TokenSettings::VARS.private_key_file;
#[cfg(feature = "asymmetric")]
const PREVIOUS_KEYS_VAR: &str = TokenSettings::VARS.previous_public_key_files;

impl TokenCodec {
    /// The codec of a configuration's [`TokenSettings`]: `secret` for the HMAC algorithms;
    /// for `RS256`, `ES256` and `EdDSA`, the PEM private key in `private_key_file` (PKCS#8,
    /// or PKCS#1 for RSA, SEC1 for P-256) and the PEM public keys (SPKI, or PKCS#1 for RSA)
    /// in `previous_public_key_files`. Empty `issuer`/`audience` mean none.
    ///
    /// Unreadable files and keys of the wrong type or size for the algorithm (RSA keys need
    /// 2048 to 4096 bits) are [`crate::config::ConfigError`]s naming the setting and the
    /// path, never the key.
    pub fn from_config(config: &Config) -> Result<TokenCodec, crate::config::ConfigError> {
        let issuer = config.tokens.issuer.clone().filter(|s| !s.is_empty());
        let audience = config.tokens.audience.clone().filter(|s| !s.is_empty());
        let leeway = config.tokens.leeway_seconds;
        if config.tokens.algorithm.is_hmac() {
            let secret = config.tokens.secret.as_ref().ok_or_else(|| {
                crate::config::ConfigError::one(format!("{SECRET_VAR} is not set"))
            })?;
            return TokenCodec::hmac(
                config.tokens.algorithm,
                secret.expose_secret().as_bytes(),
                issuer,
                audience,
                leeway,
            );
        }
        #[cfg(feature = "asymmetric")]
        return TokenCodec::asymmetric(config, issuer, audience, leeway);
        #[cfg(not(feature = "asymmetric"))]
        Err(crate::config::ConfigError::one(format!(
            "{ALGORITHM_VAR} {:?} needs otp-core's `asymmetric` feature",
            config.tokens.algorithm
        )))
    }

    /// The codec of an asymmetric algorithm's key files.
    #[cfg(feature = "asymmetric")]
    fn asymmetric(
        config: &Config,
        issuer: Option<String>,
        audience: Option<String>,
        leeway: u64,
    ) -> Result<TokenCodec, crate::config::ConfigError> {
        let algorithm = match config.tokens.algorithm {
            JwtAlgorithm::RS256 => Algorithm::RS256,
            JwtAlgorithm::ES256 => Algorithm::ES256,
            JwtAlgorithm::EdDSA => Algorithm::EdDSA,
            other => {
                return Err(crate::config::ConfigError::one(format!(
                    "{ALGORITHM_VAR} {other:?} is not supported"
                )));
            }
        };
        let path = config
            .tokens
            .private_key_file
            .as_deref()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                crate::config::ConfigError::one(format!(
                    "{PRIVATE_KEY_VAR} is required with {ALGORITHM_VAR} {algorithm:?}"
                ))
            })?;
        let pem = jwk::read_key_file(PRIVATE_KEY_VAR, path)?;
        let current = jwk::load_private_key(algorithm, &pem).map_err(|why| {
            crate::config::ConfigError::one(format!("{PRIVATE_KEY_VAR} {path:?} {why}"))
        })?;
        let mut keys = vec![PublicKey::new(current.public)];
        for path in config
            .tokens
            .previous_public_key_files
            .iter()
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
        {
            let pem = jwk::read_key_file(PREVIOUS_KEYS_VAR, path)?;
            let public = jwk::load_public_key(algorithm, &pem).map_err(|why| {
                crate::config::ConfigError::one(format!("{PREVIOUS_KEYS_VAR} {path:?} {why}"))
            })?;
            let key = PublicKey::new(public);
            // Listing the current key (or one key twice) during a rotation is harmless.
            if keys.iter().all(|k| k.kid != key.kid) {
                keys.push(key);
            }
        }
        Ok(TokenCodec {
            headers: encoded_headers(algorithm, keys.first().map(|k| k.kid.as_str())),
            algorithm,
            encoding: current.encoding,
            keys: VerificationKeys::Public(keys),
            issuer,
            audience,
            leeway,
        })
    }

    /// A codec for an HMAC algorithm with `secret`. Other algorithms are refused: build
    /// those with [`TokenCodec::from_config`].
    pub fn hmac(
        algorithm: JwtAlgorithm,
        secret: &[u8],
        issuer: Option<String>,
        audience: Option<String>,
        leeway: u64,
    ) -> Result<TokenCodec, crate::config::ConfigError> {
        let algorithm = match algorithm {
            JwtAlgorithm::HS256 => Algorithm::HS256,
            JwtAlgorithm::HS384 => Algorithm::HS384,
            JwtAlgorithm::HS512 => Algorithm::HS512,
            other => {
                return Err(crate::config::ConfigError::one(format!(
                    "{ALGORITHM_VAR} {other:?} takes a key file, not a secret"
                )));
            }
        };
        Ok(TokenCodec {
            headers: encoded_headers(algorithm, None),
            algorithm,
            #[cfg(feature = "asymmetric")]
            encoding: EncodingKey::from_secret(secret),
            keys: VerificationKeys::Hmac(Box::new(HmacKey::new(algorithm, secret)?)),
            issuer,
            audience,
            leeway,
        })
    }

    /// The JWS name of the signing algorithm (`HS256`, `RS256`, `ES256`, `EdDSA`, ...).
    pub fn algorithm_name(&self) -> &'static str {
        match self.algorithm {
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// The `kid` of the current signing key (its RFC 7638 thumbprint); `None` for HMAC.
    #[cfg(all(test, feature = "asymmetric"))]
    pub fn current_kid(&self) -> Option<&str> {
        match &self.keys {
            VerificationKeys::Hmac(_) => None,
            #[cfg(feature = "asymmetric")]
            VerificationKeys::Public(keys) => keys.first().map(|k| k.kid.as_str()),
        }
    }

    /// The JSON Web Key Set (RFC 7517) of the verification keys, for
    /// `<mount>/jwks.json`: `{"keys": [...]}` with the current key first, then the
    /// previous ones, each with `kty`, `use`, `alg`, `kid` and its public parameters only.
    /// Empty for the HMAC algorithms, whose secret is never published.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = match &self.keys {
            VerificationKeys::Hmac(_) => Vec::new(),
            #[cfg(feature = "asymmetric")]
            VerificationKeys::Public(keys) => keys.iter().map(|k| k.jwk.to_json()).collect(),
        };
        serde_json::json!({ "keys": keys })
    }

    /// Builds the claims of a new token (fresh `jti`, `iat` = now).
    pub fn claims(
        &self,
        token_type: TokenType,
        sub: &str,
        email: &str,
        sid: &str,
        lifetime_secs: u64,
        extra: serde_json::Map<String, serde_json::Value>,
    ) -> Claims {
        let iat = now_secs();
        Claims {
            sub: sub.to_owned(),
            email: email.to_owned(),
            token_type,
            jti: random_id(),
            sid: sid.to_owned(),
            iat,
            exp: iat + lifetime_secs,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            auth_time: None,
            amr: None,
            extra,
        }
    }

    /// Signs `claims` with the header `typ` of their type.
    pub fn sign(&self, claims: Claims) -> Result<SignedToken, crate::Error> {
        let failed = |e: &dyn std::fmt::Display| {
            crate::Error::Internal(format!("signing a token failed: {e}"))
        };
        // The two headers are encoded once, at construction.
        let header = match claims.token_type {
            TokenType::Access => &self.headers[0],
            TokenType::Refresh => &self.headers[1],
        };
        let payload = serde_json::to_vec(&claims).map_err(|e| failed(&e))?;
        let mut token = String::with_capacity(header.len() + payload.len() * 4 / 3 + 100);
        token.push_str(header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        let signature = match &self.keys {
            VerificationKeys::Hmac(key) => URL_SAFE_NO_PAD.encode(key.sign(token.as_bytes())),
            #[cfg(feature = "asymmetric")]
            VerificationKeys::Public(_) => {
                let signature =
                    jsonwebtoken::crypto::sign(token.as_bytes(), &self.encoding, self.algorithm)
                        .map_err(|e| failed(&e))?;
                if self.algorithm == Algorithm::ES256 {
                    // RustCrypto's P-256 signer leaves `s` as it comes: make it low, the
                    // only form `verify` accepts.
                    low_s_p256_signature(&signature).ok_or_else(|| failed(&"ES256 signature"))?
                } else {
                    signature
                }
            }
        };
        token.push('.');
        token.push_str(&signature);
        Ok(SignedToken { token, claims })
    }

    /// Verifies `token` as a token of `expected` type: algorithm, signature, header `typ`,
    /// `type` claim, `exp`, `nbf`, `iat` not in the future, `iss`/`aud` when configured.
    /// The `kid` must name a configured public key (and is refused with HMAC); `crit`
    /// headers are refused; `jku`, `x5u`, `jwk` and `x5c` are never used.
    pub fn verify(&self, token: &str, expected: TokenType) -> Result<Claims, TokenRejection> {
        // Each part is decoded and parsed once; the signature is checked before the claims
        // are read.
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenRejection::Invalid);
        }
        let (signing_input, signature) = token.rsplit_once('.').ok_or(TokenRejection::Invalid)?;
        let (header, payload) = signing_input
            .split_once('.')
            .ok_or(TokenRejection::Invalid)?;
        let header = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| TokenRejection::Invalid)?;
        let header: JoseHeader<'_> =
            serde_json::from_slice(&header).map_err(|_| TokenRejection::Invalid)?;
        if header.alg != self.algorithm_name() || header.crit.is_some() {
            return Err(TokenRejection::Invalid);
        }
        let verified = match (&self.keys, header.kid.as_deref()) {
            // No key ids are configured for HMAC keys: a `kid` selects nothing here.
            (VerificationKeys::Hmac(key), None) => {
                let signature = URL_SAFE_NO_PAD
                    .decode(signature)
                    .map_err(|_| TokenRejection::Invalid)?;
                key.verifies(signing_input.as_bytes(), &signature)
            }
            #[cfg(feature = "asymmetric")]
            (VerificationKeys::Public(keys), Some(kid)) => {
                let key = keys
                    .iter()
                    .find(|k| k.kid == kid)
                    .ok_or(TokenRejection::Invalid)?;
                if self.algorithm == Algorithm::ES256 && !low_s_p256(signature) {
                    return Err(TokenRejection::Invalid);
                }
                jsonwebtoken::crypto::verify(
                    signature,
                    signing_input.as_bytes(),
                    &key.decoding,
                    self.algorithm,
                )
                .unwrap_or(false)
            }
            _ => return Err(TokenRejection::Invalid),
        };
        match header.typ.as_deref() {
            Some(t) if t == expected.typ() => {}
            Some(ACCESS_TYP | REFRESH_TYP) => return Err(TokenRejection::WrongType),
            _ => return Err(TokenRejection::Invalid),
        }
        if !verified {
            return Err(TokenRejection::Invalid);
        }
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenRejection::Invalid)?;
        let claims: Claims =
            serde_json::from_slice(&payload).map_err(|_| TokenRejection::Invalid)?;
        self.check_claims(&claims, expected)?;
        Ok(claims)
    }

    /// The claim checks after a valid signature: times (with the leeway), issuer and
    /// audience when configured, and the `type` claim.
    fn check_claims(&self, claims: &Claims, expected: TokenType) -> Result<(), TokenRejection> {
        let now = now_secs();
        // Checked only when configured; then the claim must be present and equal.
        if let Some(iss) = &self.issuer
            && claims.iss.as_ref() != Some(iss)
        {
            return Err(TokenRejection::Invalid);
        }
        if let Some(aud) = &self.audience
            && claims.aud.as_ref() != Some(aud)
        {
            return Err(TokenRejection::Invalid);
        }
        // Not before: never set by this library, but honoured if present.
        match claims.extra.get("nbf") {
            None => {}
            Some(v) => match v.as_u64() {
                Some(nbf) if nbf <= now + self.leeway => {}
                _ => return Err(TokenRejection::Invalid),
            },
        }
        if claims.iat > now + self.leeway {
            return Err(TokenRejection::Invalid);
        }
        // RFC 7519 4.1.4: not accepted on or after `exp`.
        if claims.exp.saturating_add(self.leeway) <= now {
            return Err(TokenRejection::Expired);
        }
        if claims.token_type != expected {
            return Err(TokenRejection::WrongType);
        }
        Ok(())
    }
}

/// Half the order of P-256, big-endian: an ECDSA signature whose `s` is above it is the
/// mirror (`n − s`) of a valid one.
#[cfg(feature = "asymmetric")]
const P256_HALF_ORDER: [u8; 32] = [
    0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xde, 0x73, 0x7d, 0x56, 0xd3, 0x8b, 0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8,
];

/// Whether an ES256 signature (base64url of `r ‖ s`, 32 bytes each) has a low `s`.
/// ECDSA verifies both `s` and `n − s`; accepting only the low one (as most JOSE libraries
/// and every signature this library makes) keeps a token from having a second valid
/// encoding. Anything that is not 64 bytes is left to the verifier, which refuses it.
#[cfg(feature = "asymmetric")]
fn low_s_p256(signature: &str) -> bool {
    match URL_SAFE_NO_PAD.decode(signature) {
        Ok(bytes) if bytes.len() == 64 => bytes[32..] <= P256_HALF_ORDER[..],
        _ => true,
    }
}

/// The order of P-256, big-endian.
#[cfg(feature = "asymmetric")]
const P256_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// An ES256 signature (base64url of `r ‖ s`) with `s` replaced by `n − s` when it is high:
/// the same signature in its low-S form. `None` for anything but 64 bytes.
#[cfg(feature = "asymmetric")]
fn low_s_p256_signature(signature: &str) -> Option<String> {
    let mut bytes = URL_SAFE_NO_PAD.decode(signature).ok()?;
    if bytes.len() != 64 {
        return None;
    }
    if bytes[32..] <= P256_HALF_ORDER[..] {
        return Some(signature.to_owned());
    }
    // n − s, big-endian, with borrow (s < n for any valid signature).
    let mut borrow = 0_i16;
    for i in (0..32).rev() {
        let d = i16::from(P256_ORDER[i]) - i16::from(bytes[32 + i]) - borrow;
        borrow = i16::from(d < 0);
        bytes[32 + i] = (d + 256 * borrow) as u8;
    }
    Some(URL_SAFE_NO_PAD.encode(bytes))
}

/// The encoded headers of both token kinds.
fn encoded_headers(algorithm: Algorithm, kid: Option<&str>) -> [String; 2] {
    [TokenType::Access, TokenType::Refresh].map(|t| {
        let mut header = Header::new(algorithm);
        header.typ = Some(t.typ().to_owned());
        header.kid = kid.map(str::to_owned);
        // A header of plain strings always serializes.
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap_or_default())
    })
}

/// Longest token accepted for verification (far above any this library issues).
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The JOSE header fields verification reads; every other field (`jku`, `x5u`, `jwk`,
/// `x5c`, ...) is ignored and never used to find a key.
#[derive(Deserialize)]
struct JoseHeader<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(default, borrow)]
    typ: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    kid: Option<Cow<'a, str>>,
    #[serde(default)]
    crit: Option<IgnoredAny>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test";

    fn codec() -> TokenCodec {
        TokenCodec::hmac(JwtAlgorithm::HS256, SECRET, None, None, 0).unwrap()
    }

    fn b64(v: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    fn forge(header: serde_json::Value, claims: serde_json::Value, key: &[u8]) -> String {
        use hmac::{Hmac, Mac};
        let signing_input = format!("{}.{}", b64(&header), b64(&claims));
        let sig = match header["alg"].as_str() {
            Some("HS384") => {
                let mut m = Hmac::<sha2::Sha384>::new_from_slice(key).unwrap();
                m.update(signing_input.as_bytes());
                m.finalize().into_bytes().to_vec()
            }
            _ => {
                let mut m = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
                m.update(signing_input.as_bytes());
                m.finalize().into_bytes().to_vec()
            }
        };
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    fn good_claims(kind: &str) -> serde_json::Value {
        let now = now_secs();
        json!({"sub": "u@example.com", "email": "u@example.com", "type": kind,
               "jti": random_id(), "sid": random_id(), "iat": now, "exp": now + 60})
    }

    #[test]
    fn roundtrip_access_and_refresh() {
        let c = codec();
        for t in [TokenType::Access, TokenType::Refresh] {
            let claims = c.claims(t, "sub1", "u@example.com", "sid1", 60, Default::default());
            let signed = c.sign(claims.clone()).unwrap();
            assert_eq!(c.verify(&signed.token, t).unwrap(), claims);
        }
    }

    #[test]
    fn jti_has_128_random_bits() {
        let a = random_id();
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 16);
        assert_ne!(a, random_id());
    }

    #[test]
    fn types_cannot_stand_in_for_each_other() {
        let c = codec();
        let access = c
            .sign(c.claims(
                TokenType::Access,
                "s",
                "e@x.io",
                "sid",
                60,
                Default::default(),
            ))
            .unwrap();
        let refresh = c
            .sign(c.claims(
                TokenType::Refresh,
                "s",
                "e@x.io",
                "sid",
                60,
                Default::default(),
            ))
            .unwrap();
        assert_eq!(
            c.verify(&access.token, TokenType::Refresh),
            Err(TokenRejection::WrongType)
        );
        assert_eq!(
            c.verify(&refresh.token, TokenType::Access),
            Err(TokenRejection::WrongType)
        );
        // Header says access but the claim says refresh (and the reverse): refused.
        let mixed = forge(
            json!({"alg": "HS256", "typ": ACCESS_TYP}),
            good_claims("refresh"),
            SECRET,
        );
        assert_eq!(
            c.verify(&mixed, TokenType::Access),
            Err(TokenRejection::WrongType)
        );
        let mixed = forge(
            json!({"alg": "HS256", "typ": REFRESH_TYP}),
            good_claims("access"),
            SECRET,
        );
        assert_eq!(
            c.verify(&mixed, TokenType::Refresh),
            Err(TokenRejection::WrongType)
        );
        // A plain "JWT" typ is not ours.
        let plain = forge(
            json!({"alg": "HS256", "typ": "JWT"}),
            good_claims("access"),
            SECRET,
        );
        assert_eq!(
            c.verify(&plain, TokenType::Access),
            Err(TokenRejection::Invalid)
        );
    }

    #[test]
    fn claims_are_parsed_once_with_extras_and_without_duplicates() {
        let c = codec();
        let mut extra = serde_json::Map::new();
        extra.insert("role".into(), json!("admin"));
        extra.insert("tenant".into(), json!({"id": 7}));
        let claims = c.claims(TokenType::Access, "s", "e@x.io", "sid", 60, extra);
        let signed = c.sign(claims.clone()).unwrap();
        let back = c.verify(&signed.token, TokenType::Access).unwrap();
        assert_eq!(back, claims);
        assert_eq!(back.extra["tenant"]["id"], 7);

        let h = json!({"alg": "HS256", "typ": "at+jwt"});
        let mut dup = good_claims("access").to_string();
        dup.insert_str(1, "\"sub\":\"other@example.com\",");
        let token = format!("{}.{}", b64(&h), URL_SAFE_NO_PAD.encode(dup.as_bytes()));
        let signed_dup = {
            let mut m = Hmac::<sha2::Sha256>::new_from_slice(SECRET).unwrap();
            m.update(token.as_bytes());
            format!(
                "{token}.{}",
                URL_SAFE_NO_PAD.encode(m.finalize().into_bytes())
            )
        };
        assert_eq!(
            c.verify(&signed_dup, TokenType::Access),
            Err(TokenRejection::Invalid),
            "a claim given twice"
        );
        for missing in ["sub", "email", "type", "jti", "sid", "iat", "exp"] {
            let mut claims = good_claims("access");
            claims.as_object_mut().unwrap().remove(missing);
            let t = forge(h.clone(), claims, SECRET);
            assert_eq!(
                c.verify(&t, TokenType::Access),
                Err(TokenRejection::Invalid),
                "without {missing}"
            );
        }
        let mut future = good_claims("access");
        future["nbf"] = json!(now_secs() + 600);
        let t = forge(h.clone(), future, SECRET);
        assert_eq!(
            c.verify(&t, TokenType::Access),
            Err(TokenRejection::Invalid)
        );
        let mut past = good_claims("access");
        past["nbf"] = json!(now_secs() - 5);
        let t = forge(h.clone(), past, SECRET);
        assert!(c.verify(&t, TokenType::Access).is_ok());
        let long = format!("{}.{}.x", "a".repeat(MAX_TOKEN_LEN), "b");
        assert_eq!(
            c.verify(&long, TokenType::Access),
            Err(TokenRejection::Invalid)
        );
        for garbage in [
            "",
            ".",
            "..",
            "a.b",
            "a.b.c.d",
            "eyJ9.eyJ9.",
            "\u{0}.\u{0}.\u{0}",
        ] {
            assert_eq!(
                c.verify(garbage, TokenType::Access),
                Err(TokenRejection::Invalid),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn forged_headers_are_refused() {
        let c = codec();
        let ok = forge(
            json!({"alg": "HS256", "typ": ACCESS_TYP}),
            good_claims("access"),
            SECRET,
        );
        assert!(
            c.verify(&ok, TokenType::Access).is_ok(),
            "the forge helper makes valid tokens"
        );
        let cases = [
            // alg none with an empty signature
            {
                let h = b64(&json!({"alg": "none", "typ": ACCESS_TYP}));
                format!("{h}.{}.", b64(&good_claims("access")))
            },
            // swapped algorithm, signed with the same secret
            forge(
                json!({"alg": "HS384", "typ": ACCESS_TYP}),
                good_claims("access"),
                SECRET,
            ),
            // foreign kid
            forge(
                json!({"alg": "HS256", "typ": ACCESS_TYP, "kid": "other"}),
                good_claims("access"),
                SECRET,
            ),
            // crit header
            forge(
                json!({"alg": "HS256", "typ": ACCESS_TYP, "crit": ["exp"]}),
                good_claims("access"),
                SECRET,
            ),
            // another secret
            forge(
                json!({"alg": "HS256", "typ": ACCESS_TYP}),
                good_claims("access"),
                b"another-secret-another-secret-123",
            ),
            // stripped signature
            {
                let (head, _) = ok.rsplit_once('.').unwrap();
                format!("{head}.")
            },
            // altered payload under the original signature
            {
                let parts: Vec<&str> = ok.split('.').collect();
                let mut claims = good_claims("access");
                claims["sub"] = json!("admin@example.com");
                format!("{}.{}.{}", parts[0], b64(&claims), parts[2])
            },
            "not.a.jwt".to_owned(),
            String::new(),
        ];
        for (i, t) in cases.iter().enumerate() {
            assert!(c.verify(t, TokenType::Access).is_err(), "case {i} accepted");
        }
    }

    #[test]
    fn key_urls_in_the_header_are_never_followed() {
        // The signature is made with an attacker key that the header points to; the token
        // must fail because only the configured key is used.
        let c = codec();
        let attacker = b"attacker-controlled-key-material!!";
        for extra in [
            json!({"jku": "https://evil.example/jwks.json"}),
            json!({"x5u": "https://evil.example/cert.pem"}),
            json!({"jwk": {"kty": "oct", "k": URL_SAFE_NO_PAD.encode(attacker)}}),
        ] {
            let mut h = json!({"alg": "HS256", "typ": ACCESS_TYP});
            h.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let t = forge(h, good_claims("access"), attacker);
            assert_eq!(
                c.verify(&t, TokenType::Access),
                Err(TokenRejection::Invalid)
            );
        }
    }

    #[test]
    fn time_claims_are_checked() {
        let c = codec();
        let now = now_secs();
        let mut expired = good_claims("access");
        expired["exp"] = json!(now - 1);
        let t = forge(json!({"alg": "HS256", "typ": ACCESS_TYP}), expired, SECRET);
        assert_eq!(
            c.verify(&t, TokenType::Access),
            Err(TokenRejection::Expired)
        );

        // RFC 7519 4.1.4: on `exp` itself the token is expired.
        let mut at_exp = good_claims("access");
        at_exp["exp"] = json!(now_secs());
        let t = forge(json!({"alg": "HS256", "typ": ACCESS_TYP}), at_exp, SECRET);
        assert_eq!(
            c.verify(&t, TokenType::Access),
            Err(TokenRejection::Expired)
        );

        let mut no_exp = good_claims("access");
        no_exp.as_object_mut().unwrap().remove("exp");
        let t = forge(json!({"alg": "HS256", "typ": ACCESS_TYP}), no_exp, SECRET);
        assert_eq!(
            c.verify(&t, TokenType::Access),
            Err(TokenRejection::Invalid)
        );

        let mut not_yet = good_claims("access");
        not_yet["nbf"] = json!(now + 120);
        let t = forge(json!({"alg": "HS256", "typ": ACCESS_TYP}), not_yet, SECRET);
        assert_eq!(
            c.verify(&t, TokenType::Access),
            Err(TokenRejection::Invalid)
        );

        let mut future_iat = good_claims("access");
        future_iat["iat"] = json!(now + 120);
        let t = forge(
            json!({"alg": "HS256", "typ": ACCESS_TYP}),
            future_iat,
            SECRET,
        );
        assert_eq!(
            c.verify(&t, TokenType::Access),
            Err(TokenRejection::Invalid)
        );
    }

    #[test]
    fn issuer_and_audience_are_checked_when_configured() {
        let c = TokenCodec::hmac(
            JwtAlgorithm::HS256,
            SECRET,
            Some("https://issuer".into()),
            Some("api".into()),
            0,
        )
        .unwrap();
        let good = c
            .sign(c.claims(
                TokenType::Access,
                "s",
                "e@x.io",
                "sid",
                60,
                Default::default(),
            ))
            .unwrap();
        assert!(c.verify(&good.token, TokenType::Access).is_ok());
        for (iss, aud) in [
            (Some("https://other"), Some("api")),
            (Some("https://issuer"), Some("other")),
            (None, Some("api")),
            (Some("https://issuer"), None),
        ] {
            let mut claims = good_claims("access");
            if let Some(i) = iss {
                claims["iss"] = json!(i);
            }
            if let Some(a) = aud {
                claims["aud"] = json!(a);
            }
            let t = forge(json!({"alg": "HS256", "typ": ACCESS_TYP}), claims, SECRET);
            assert_eq!(
                c.verify(&t, TokenType::Access),
                Err(TokenRejection::Invalid),
                "{iss:?} {aud:?}"
            );
        }
    }

    #[test]
    fn every_hmac_algorithm_roundtrips() {
        for alg in [
            JwtAlgorithm::HS256,
            JwtAlgorithm::HS384,
            JwtAlgorithm::HS512,
        ] {
            let c = TokenCodec::hmac(alg, SECRET, None, None, 0).unwrap();
            let t = c
                .sign(c.claims(
                    TokenType::Access,
                    "s",
                    "e@x.io",
                    "sid",
                    60,
                    Default::default(),
                ))
                .unwrap();
            assert!(c.verify(&t.token, TokenType::Access).is_ok());
            let other = TokenCodec::hmac(
                if alg == JwtAlgorithm::HS256 {
                    JwtAlgorithm::HS512
                } else {
                    JwtAlgorithm::HS256
                },
                SECRET,
                None,
                None,
                0,
            )
            .unwrap();
            assert!(other.verify(&t.token, TokenType::Access).is_err());
        }
    }

    #[test]
    #[cfg(not(feature = "asymmetric"))]
    fn asymmetric_algorithms_need_the_feature() {
        for alg in [
            JwtAlgorithm::RS256,
            JwtAlgorithm::ES256,
            JwtAlgorithm::EdDSA,
        ] {
            let e = TokenCodec::from_config(&{
                let mut c = Config::default();
                c.tokens.algorithm = alg;
                c.tokens.private_key_file = Some("key.pem".into());
                c
            })
            .unwrap_err();
            assert!(e.to_string().contains("`asymmetric` feature"), "{e}");
        }
    }

    // --- Asymmetric keys (fixtures in testdata/keys, test-only) ---

    #[cfg(feature = "asymmetric")]
    mod asymmetric {
        use super::*;

        // --- Asymmetric keys (fixtures in testdata/keys, test-only) ---

        const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/keys/");

        fn key_path(name: &str) -> String {
            format!("{KEYS}{name}")
        }

        fn config(alg: JwtAlgorithm, private: &str, previous: &[&str]) -> Config {
            let mut c = Config::default();
            c.tokens.algorithm = alg;
            c.tokens.private_key_file = Some(key_path(private));
            c.tokens.previous_public_key_files = previous.iter().map(|p| key_path(p)).collect();
            c
        }

        fn asym(alg: JwtAlgorithm, private: &str, previous: &[&str]) -> TokenCodec {
            TokenCodec::from_config(&config(alg, private, previous)).unwrap()
        }

        fn access(c: &TokenCodec) -> SignedToken {
            c.sign(c.claims(
                TokenType::Access,
                "s",
                "e@x.io",
                "sid",
                60,
                Default::default(),
            ))
            .unwrap()
        }

        #[test]
        fn es256_signatures_are_low_s_and_high_s_is_refused() {
            let c = asym(JwtAlgorithm::ES256, "ec-a.pem", &[]);
            let VerificationKeys::Public(keys) = &c.keys else {
                panic!("an ES256 codec has public keys")
            };
            let public = &keys[0].decoding;
            let mut mirrored_seen = 0;
            for _ in 0..32 {
                let t = access(&c).token;
                let (input, sig) = t.rsplit_once('.').unwrap();
                assert!(low_s_p256(sig), "every signature made is low-S");
                assert!(c.verify(&t, TokenType::Access).is_ok());
                // Mirror it: s -> n - s. Still valid ECDSA, as the other library says...
                let mut bytes = URL_SAFE_NO_PAD.decode(sig).unwrap();
                let mut borrow = 0_i16;
                for i in (0..32).rev() {
                    let d = i16::from(P256_ORDER[i]) - i16::from(bytes[32 + i]) - borrow;
                    borrow = i16::from(d < 0);
                    bytes[32 + i] = u8::try_from(d + 256 * borrow).unwrap();
                }
                let mirrored = URL_SAFE_NO_PAD.encode(&bytes);
                assert!(!low_s_p256(&mirrored));
                assert!(
                    jsonwebtoken::crypto::verify(
                        &mirrored,
                        input.as_bytes(),
                        public,
                        Algorithm::ES256
                    )
                    .unwrap()
                );
                // ... and refused here.
                let forged = format!("{input}.{mirrored}");
                assert_eq!(
                    c.verify(&forged, TokenType::Access),
                    Err(TokenRejection::Invalid)
                );
                mirrored_seen += 1;
                // Normalizing the mirror gives the original back.
                assert_eq!(low_s_p256_signature(&mirrored).as_deref(), Some(sig));
            }
            assert_eq!(mirrored_seen, 32);
        }

        fn jose_alg(alg: JwtAlgorithm) -> Algorithm {
            match alg {
                JwtAlgorithm::RS256 => Algorithm::RS256,
                JwtAlgorithm::ES256 => Algorithm::ES256,
                JwtAlgorithm::EdDSA => Algorithm::EdDSA,
                _ => Algorithm::HS256,
            }
        }

        /// Signs any header and claims with the private key in the fixture `private`.
        fn sign_with(
            alg: JwtAlgorithm,
            private: &str,
            header: serde_json::Value,
            claims: serde_json::Value,
        ) -> String {
            let pem = std::fs::read(key_path(private)).unwrap();
            let key = jwk::load_private_key(jose_alg(alg), &pem).unwrap();
            let header: Header = serde_json::from_value(header).unwrap();
            let token = jsonwebtoken::encode(&header, &claims, &key.encoding).unwrap();
            if alg != JwtAlgorithm::ES256 {
                return token;
            }
            // As this library signs: low-S (jsonwebtoken leaves `s` as it comes).
            let (input, sig) = token.rsplit_once('.').unwrap();
            format!("{input}.{}", low_s_p256_signature(sig).unwrap())
        }

        fn kid_of(alg: JwtAlgorithm, public: &str) -> String {
            let pem = std::fs::read(key_path(public)).unwrap();
            jwk::load_public_key(jose_alg(alg), &pem)
                .unwrap()
                .thumbprint()
        }

        /// (algorithm, key A, key A public, key B, key B public)
        const ASYMMETRIC: [(JwtAlgorithm, &str, &str, &str, &str); 3] = [
            (
                JwtAlgorithm::RS256,
                "rsa-a.pem",
                "rsa-a.pub.pem",
                "rsa-b.pem",
                "rsa-b.pub.pem",
            ),
            (
                JwtAlgorithm::ES256,
                "ec-a.pem",
                "ec-a.pub.pem",
                "ec-b.pem",
                "ec-b.pub.pem",
            ),
            (
                JwtAlgorithm::EdDSA,
                "ed25519-a.pem",
                "ed25519-a.pub.pem",
                "ed25519-b.pem",
                "ed25519-b.pub.pem",
            ),
        ];

        #[test]
        fn asymmetric_roundtrip_from_pem_files() {
            for (alg, private) in [
                (JwtAlgorithm::RS256, "rsa-a.pem"),
                (JwtAlgorithm::RS256, "rsa-a.pkcs1.pem"),
                (JwtAlgorithm::ES256, "ec-a.pem"),
                (JwtAlgorithm::ES256, "ec-a.sec1.pem"),
                (JwtAlgorithm::EdDSA, "ed25519-a.pem"),
            ] {
                let c = asym(alg, private, &[]);
                assert_eq!(c.algorithm_name(), format!("{alg:?}"));
                for t in [TokenType::Access, TokenType::Refresh] {
                    let claims =
                        c.claims(t, "sub1", "u@example.com", "sid1", 60, Default::default());
                    let signed = c.sign(claims.clone()).unwrap();
                    let header = jsonwebtoken::decode_header(&signed.token).unwrap();
                    assert_eq!(header.alg, jose_alg(alg));
                    assert_eq!(header.typ.as_deref(), Some(t.typ()));
                    assert_eq!(header.kid.as_deref(), c.current_kid());
                    assert_eq!(c.verify(&signed.token, t).unwrap(), claims, "{private}");
                }
                // A resource server verifying with the published JWKS accepts the token.
                let signed = access(&c);
                let jwks = c.jwks();
                let published: jsonwebtoken::jwk::Jwk =
                    serde_json::from_value(jwks["keys"][0].clone()).unwrap();
                assert_eq!(published.common.key_id.as_deref(), c.current_kid());
                let mut v = jsonwebtoken::Validation::new(jose_alg(alg));
                v.validate_aud = false;
                assert!(
                    jsonwebtoken::decode::<Claims>(
                        &signed.token,
                        &DecodingKey::from_jwk(&published).unwrap(),
                        &v
                    )
                    .is_ok(),
                    "{private}"
                );
            }
        }

        #[test]
        fn kid_is_the_rfc7638_thumbprint_of_the_key() {
            for (alg, a, a_pub, _, _) in ASYMMETRIC {
                let c = asym(alg, a, &[]);
                assert_eq!(c.current_kid(), Some(kid_of(alg, a_pub).as_str()));
                assert_eq!(c.current_kid().map(str::len), Some(43));
            }
            assert_eq!(codec().current_kid(), None);
        }

        #[test]
        fn previous_keys_still_verify_after_rotation() {
            for (alg, a, a_pub, b, b_pub) in ASYMMETRIC {
                let old = asym(alg, a, &[]);
                let old_token = access(&old);
                let rotated = asym(alg, b, &[a_pub]);
                assert!(rotated.verify(&old_token.token, TokenType::Access).is_ok());
                let new_token = access(&rotated);
                assert!(rotated.verify(&new_token.token, TokenType::Access).is_ok());
                // New tokens are signed with the new key.
                assert_eq!(
                    jsonwebtoken::decode_header(&new_token.token).unwrap().kid,
                    Some(kid_of(alg, b_pub))
                );
                // Once the old key is dropped from the list, its tokens are refused.
                let done = asym(alg, b, &[]);
                assert_eq!(
                    done.verify(&old_token.token, TokenType::Access),
                    Err(TokenRejection::Invalid)
                );
                // Listing the current key among the previous ones changes nothing.
                let listed = asym(alg, b, &[b_pub, a_pub, a_pub]);
                assert_eq!(listed.jwks()["keys"].as_array().unwrap().len(), 2);
            }
        }

        #[test]
        fn forged_kid_with_an_unrelated_key_is_refused() {
            for (alg, a, a_pub, b, b_pub) in ASYMMETRIC {
                let c = asym(alg, a, &[]);
                let h = json!({"alg": jose_alg(alg), "typ": ACCESS_TYP, "kid": kid_of(alg, a_pub)});
                let forged = sign_with(alg, b, h, good_claims("access"));
                assert_eq!(
                    c.verify(&forged, TokenType::Access),
                    Err(TokenRejection::Invalid),
                    "{alg:?}"
                );
                // The attacker's own kid is unknown.
                let h = json!({"alg": jose_alg(alg), "typ": ACCESS_TYP, "kid": kid_of(alg, b_pub)});
                let foreign = sign_with(alg, b, h, good_claims("access"));
                assert_eq!(
                    c.verify(&foreign, TokenType::Access),
                    Err(TokenRejection::Invalid)
                );
                // The same header, signed by the configured key, is fine: only the key differs.
                let h = json!({"alg": jose_alg(alg), "typ": ACCESS_TYP, "kid": kid_of(alg, a_pub)});
                let genuine = sign_with(alg, a, h, good_claims("access"));
                assert!(c.verify(&genuine, TokenType::Access).is_ok());
            }
        }

        #[test]
        fn key_headers_never_select_the_key_for_asymmetric_algorithms() {
            // The attacker signs with key B and points every key header at it; the codec only
            // knows key A.
            for (alg, a, a_pub, b, _) in ASYMMETRIC {
                let c = asym(alg, a, &[]);
                let attacker = asym(alg, b, &[]);
                let attacker_jwk = attacker.jwks()["keys"][0].clone();
                for kid in [
                    kid_of(alg, a_pub),
                    attacker.current_kid().unwrap().to_owned(),
                ] {
                    for extra in [
                        json!({"jwk": attacker_jwk.clone()}),
                        json!({"jku": "https://evil.example/jwks.json"}),
                        json!({"x5u": "https://evil.example/cert.pem"}),
                        json!({"x5c": ["MIIBkTCB+wIJAKHBfpegPjMCMA0GCSqGSIb3DQEBBQUAMBExDzANBgNVBAMMBnVudXNlZDAeFw0="]}),
                    ] {
                        let mut h = json!({"alg": jose_alg(alg), "typ": ACCESS_TYP, "kid": kid});
                        h.as_object_mut()
                            .unwrap()
                            .extend(extra.as_object().unwrap().clone());
                        let t = sign_with(alg, b, h, good_claims("access"));
                        assert_eq!(
                            c.verify(&t, TokenType::Access),
                            Err(TokenRejection::Invalid),
                            "{alg:?} {extra}"
                        );
                    }
                }
            }
        }

        #[test]
        fn public_key_as_hmac_secret_is_refused() {
            // The classic algorithm confusion: an HS256 token keyed with the public key bytes.
            for (alg, private, public) in [
                (JwtAlgorithm::RS256, "rsa-a.pem", "rsa-a.pub.pem"),
                (JwtAlgorithm::RS256, "rsa-a.pem", "rsa-a.pkcs1.pub.pem"),
                (JwtAlgorithm::ES256, "ec-a.pem", "ec-a.pub.pem"),
                (JwtAlgorithm::EdDSA, "ed25519-a.pem", "ed25519-a.pub.pem"),
            ] {
                let c = asym(alg, private, &[]);
                let pem = std::fs::read(key_path(public)).unwrap();
                let kid = c.current_kid().unwrap().to_owned();
                for header in [
                    json!({"alg": "HS256", "typ": ACCESS_TYP, "kid": kid}),
                    json!({"alg": "HS256", "typ": ACCESS_TYP}),
                ] {
                    let t = forge(header, good_claims("access"), &pem);
                    assert_eq!(
                        c.verify(&t, TokenType::Access),
                        Err(TokenRejection::Invalid),
                        "{public}"
                    );
                }
                // Also with the header claiming the configured algorithm.
                let h = b64(&json!({"alg": jose_alg(alg), "typ": ACCESS_TYP, "kid": kid}));
                let signing_input = format!("{h}.{}", b64(&good_claims("access")));
                let t = {
                    use hmac::{Hmac, Mac};
                    let mut m = Hmac::<sha2::Sha256>::new_from_slice(&pem).unwrap();
                    m.update(signing_input.as_bytes());
                    format!(
                        "{signing_input}.{}",
                        URL_SAFE_NO_PAD.encode(m.finalize().into_bytes())
                    )
                };
                assert_eq!(
                    c.verify(&t, TokenType::Access),
                    Err(TokenRejection::Invalid)
                );
            }
        }

        #[test]
        fn asymmetric_headers_are_checked() {
            let (alg, a, a_pub, _, _) = ASYMMETRIC[1];
            let c = asym(alg, a, &[]);
            let kid = kid_of(alg, a_pub);
            let cases = [
                // no kid
                sign_with(
                    alg,
                    a,
                    json!({"alg": "ES256", "typ": ACCESS_TYP}),
                    good_claims("access"),
                ),
                // unknown kid
                sign_with(
                    alg,
                    a,
                    json!({"alg": "ES256", "typ": ACCESS_TYP, "kid": "unknown"}),
                    good_claims("access"),
                ),
                // crit header
                sign_with(
                    alg,
                    a,
                    json!({"alg": "ES256", "typ": ACCESS_TYP, "kid": kid, "crit": ["exp"]}),
                    good_claims("access"),
                ),
                // another asymmetric algorithm with a key of its own
                sign_with(
                    JwtAlgorithm::EdDSA,
                    "ed25519-a.pem",
                    json!({"alg": "EdDSA", "typ": ACCESS_TYP, "kid": kid}),
                    good_claims("access"),
                ),
                // alg none
                {
                    let h = b64(&json!({"alg": "none", "typ": ACCESS_TYP, "kid": kid}));
                    format!("{h}.{}.", b64(&good_claims("access")))
                },
                // plain JWT typ
                sign_with(
                    alg,
                    a,
                    json!({"alg": "ES256", "typ": "JWT", "kid": kid}),
                    good_claims("access"),
                ),
            ];
            for (i, t) in cases.iter().enumerate() {
                assert_eq!(
                    c.verify(t, TokenType::Access),
                    Err(TokenRejection::Invalid),
                    "case {i}"
                );
            }
        }

        #[test]
        fn asymmetric_claims_are_checked_like_hmac() {
            let (alg, a, a_pub, _, _) = ASYMMETRIC[2];
            let c = TokenCodec::from_config(&{
                let mut c = config(alg, a, &[]);
                c.tokens.issuer = Some("https://issuer".into());
                c.tokens.audience = Some("api".into());
                c
            })
            .unwrap();
            let header = |typ: &str| json!({"alg": "EdDSA", "typ": typ, "kid": kid_of(alg, a_pub)});
            let with = |mut claims: serde_json::Value| {
                claims["iss"] = json!("https://issuer");
                claims["aud"] = json!("api");
                claims
            };
            let ok = sign_with(alg, a, header(ACCESS_TYP), with(good_claims("access")));
            assert!(c.verify(&ok, TokenType::Access).is_ok());
            assert_eq!(
                c.verify(&ok, TokenType::Refresh),
                Err(TokenRejection::WrongType)
            );
            let mixed = sign_with(alg, a, header(ACCESS_TYP), with(good_claims("refresh")));
            assert_eq!(
                c.verify(&mixed, TokenType::Access),
                Err(TokenRejection::WrongType)
            );
            let mut expired = with(good_claims("access"));
            expired["exp"] = json!(now_secs() - 1);
            let t = sign_with(alg, a, header(ACCESS_TYP), expired);
            assert_eq!(
                c.verify(&t, TokenType::Access),
                Err(TokenRejection::Expired)
            );
            let mut future_iat = with(good_claims("access"));
            future_iat["iat"] = json!(now_secs() + 120);
            let t = sign_with(alg, a, header(ACCESS_TYP), future_iat);
            assert_eq!(
                c.verify(&t, TokenType::Access),
                Err(TokenRejection::Invalid)
            );
            let mut other_aud = with(good_claims("access"));
            other_aud["aud"] = json!("other");
            let t = sign_with(alg, a, header(ACCESS_TYP), other_aud);
            assert_eq!(
                c.verify(&t, TokenType::Access),
                Err(TokenRejection::Invalid)
            );
            let t = sign_with(alg, a, header(ACCESS_TYP), good_claims("access"));
            assert_eq!(
                c.verify(&t, TokenType::Access),
                Err(TokenRejection::Invalid),
                "iss and aud are required when configured"
            );
        }

        #[test]
        fn jwks_lists_public_keys_only() {
            for (alg, _, a_pub, b, b_pub) in ASYMMETRIC {
                let c = asym(alg, b, &[a_pub]);
                let jwks = c.jwks();
                let keys = jwks["keys"].as_array().unwrap();
                assert_eq!(keys.len(), 2);
                assert_eq!(keys[0]["kid"], kid_of(alg, b_pub), "current key first");
                assert_eq!(keys[1]["kid"], kid_of(alg, a_pub));
                for k in keys {
                    assert_eq!(k["use"], "sig");
                    assert_eq!(k["alg"], format!("{alg:?}"));
                    for private in ["d", "p", "q", "dp", "dq", "qi", "k", "oth"] {
                        assert!(k.get(private).is_none(), "{alg:?} publishes {private}");
                    }
                }
                let debug = format!("{c:?}");
                assert!(
                    !debug.contains(keys[0]["x"].as_str().unwrap_or("n/a")),
                    "{debug}"
                );
                assert!(
                    !debug.contains(keys[0]["n"].as_str().unwrap_or("n/a")),
                    "{debug}"
                );
            }
            assert_eq!(codec().jwks(), json!({"keys": []}));
            let hmac = TokenCodec::from_config(&{
                let mut c = Config::default();
                c.tokens.secret = Some("8d3c0e2b6a4f4f6e9b1d7c5a3e2f1a0b9c8d7e6f".into());
                c
            })
            .unwrap();
            assert_eq!(hmac.jwks(), json!({"keys": []}));
            assert_eq!(hmac.algorithm_name(), "HS256");
            assert!(!format!("{hmac:?}").contains("8d3c0e2b"));
        }

        #[test]
        fn hmac_from_config_is_unchanged() {
            let secret = "8d3c0e2b6a4f4f6e9b1d7c5a3e2f1a0b9c8d7e6f";
            let c = TokenCodec::from_config(&{
                let mut c = Config::default();
                c.tokens.secret = Some(secret.into());
                c.tokens.algorithm = JwtAlgorithm::HS384;
                c.tokens.issuer = Some(String::new());
                c.tokens.audience = Some(String::new());
                c
            })
            .unwrap();
            let t = access(&c);
            assert_eq!(t.claims.iss, None, "an empty issuer means none");
            assert_eq!(t.claims.aud, None);
            assert_eq!(jsonwebtoken::decode_header(&t.token).unwrap().kid, None);
            let same =
                TokenCodec::hmac(JwtAlgorithm::HS384, secret.as_bytes(), None, None, 0).unwrap();
            assert!(same.verify(&t.token, TokenType::Access).is_ok());
            assert!(TokenCodec::from_config(&Config::default()).is_err());
            assert!(
                TokenCodec::hmac(JwtAlgorithm::ES256, secret.as_bytes(), None, None, 0).is_err()
            );
        }

        #[test]
        fn key_file_errors_name_the_setting_and_path() {
            let err = |config: Config| match TokenCodec::from_config(&config) {
                Err(e) => e.problems.join("; "),
                other => panic!("expected a configuration error, got {other:?}"),
            };
            for (alg, private, previous, var, path, why) in [
                (
                    JwtAlgorithm::ES256,
                    "rsa-a.pem",
                    None,
                    PRIVATE_KEY_VAR,
                    "rsa-a.pem",
                    "RSA",
                ),
                (
                    JwtAlgorithm::RS256,
                    "ec-a.pem",
                    None,
                    PRIVATE_KEY_VAR,
                    "ec-a.pem",
                    "EC",
                ),
                (
                    JwtAlgorithm::RS256,
                    "rsa-1024.pem",
                    None,
                    PRIVATE_KEY_VAR,
                    "rsa-1024.pem",
                    "2048",
                ),
                (
                    JwtAlgorithm::ES256,
                    "ec-p384.pem",
                    None,
                    PRIVATE_KEY_VAR,
                    "ec-p384.pem",
                    "P-256",
                ),
                (
                    JwtAlgorithm::EdDSA,
                    "ed25519-a.pub.pem",
                    None,
                    PRIVATE_KEY_VAR,
                    "ed25519-a.pub.pem",
                    "public key",
                ),
                (
                    JwtAlgorithm::EdDSA,
                    "missing.pem",
                    None,
                    PRIVATE_KEY_VAR,
                    "missing.pem",
                    "cannot be read",
                ),
                (
                    JwtAlgorithm::ES256,
                    "ec-a.pem",
                    Some("rsa-a.pub.pem"),
                    PREVIOUS_KEYS_VAR,
                    "rsa-a.pub.pem",
                    "RSA",
                ),
                (
                    JwtAlgorithm::ES256,
                    "ec-a.pem",
                    Some("ec-b.pem"),
                    PREVIOUS_KEYS_VAR,
                    "ec-b.pem",
                    "private key",
                ),
                (
                    JwtAlgorithm::ES256,
                    "ec-a.pem",
                    Some("missing.pem"),
                    PREVIOUS_KEYS_VAR,
                    "missing.pem",
                    "cannot be read",
                ),
            ] {
                let msg = err(config(alg, private, previous.as_slice()));
                assert!(msg.starts_with(var), "{msg}");
                assert!(msg.contains(&key_path(path)), "{msg}");
                assert!(msg.contains(why), "{msg}");
                assert!(!msg.contains("-----") && !msg.contains("MII"), "{msg}");
            }
            let msg = err({
                let mut c = Config::default();
                c.tokens.algorithm = JwtAlgorithm::RS256;
                c
            });
            assert!(msg.contains(PRIVATE_KEY_VAR), "{msg}");
        }
    }
}
