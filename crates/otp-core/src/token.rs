//! JWT access and refresh tokens: issue and verify.
//!
//! Both kinds carry `sub`, `email`, `jti` (128 random bits), `sid` (the session), `iat`,
//! `exp`, a `type` claim, and `iss`/`aud` when configured. They differ in the header `typ`
//! (`at+jwt` for access, `refresh+jwt` for refresh) and in the `type` claim, and each check
//! insists on both, so neither can stand in for the other (RFC 8725 3.11).

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::config::JwtAlgorithm;
use crate::error::TokenRejection;

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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Claims added by the application's hooks.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Claim names the hooks may not set: the library owns them.
pub const RESERVED_CLAIMS: &[&str] = &[
    "sub", "email", "type", "jti", "sid", "iat", "exp", "nbf", "iss", "aud",
];

/// A signed token with the claims it was made from.
#[derive(Debug, Clone)]
pub struct SignedToken {
    /// The compact JWT.
    pub token: String,
    /// Its claims.
    pub claims: Claims,
}

/// Draws a 128-bit random identifier, base64url (22 characters): token ids and session ids.
pub fn random_id() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The current time in seconds since the epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Signs and verifies tokens under one configured algorithm and key.
pub struct TokenCodec {
    algorithm: Algorithm,
    encoding: EncodingKey,
    decoding: DecodingKey,
    access_validation: Validation,
    refresh_validation: Validation,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: u64,
}

impl std::fmt::Debug for TokenCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCodec")
            .field("algorithm", &self.algorithm)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl TokenCodec {
    /// A codec for an HMAC algorithm with `secret`. Other algorithms are refused by the
    /// configuration before this is reached.
    pub fn hmac(
        algorithm: JwtAlgorithm,
        secret: &[u8],
        issuer: Option<String>,
        audience: Option<String>,
        leeway: u64,
    ) -> Result<TokenCodec, crate::Error> {
        let algorithm = match algorithm {
            JwtAlgorithm::HS256 => Algorithm::HS256,
            JwtAlgorithm::HS384 => Algorithm::HS384,
            JwtAlgorithm::HS512 => Algorithm::HS512,
            other => {
                return Err(crate::Error::Config(format!(
                    "OTP_AUTH_JWT_ALGORITHM {other:?} is not supported yet"
                )));
            }
        };
        let validation = |_: TokenType| {
            let mut v = Validation::new(algorithm);
            v.leeway = leeway;
            v.validate_exp = true;
            v.validate_nbf = true;
            let mut required: HashSet<String> = ["exp", "sub"].map(str::to_owned).into();
            if let Some(iss) = &issuer {
                v.set_issuer(&[iss]);
                required.insert("iss".to_owned());
            }
            match &audience {
                Some(aud) => {
                    v.set_audience(&[aud]);
                    required.insert("aud".to_owned());
                }
                None => v.validate_aud = false,
            }
            v.required_spec_claims = required;
            v
        };
        Ok(TokenCodec {
            algorithm,
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            access_validation: validation(TokenType::Access),
            refresh_validation: validation(TokenType::Refresh),
            issuer,
            audience,
            leeway,
        })
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
            extra,
        }
    }

    /// Signs `claims` with the header `typ` of their type.
    pub fn sign(&self, claims: Claims) -> Result<SignedToken, crate::Error> {
        let mut header = Header::new(self.algorithm);
        header.typ = Some(claims.token_type.typ().to_owned());
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| crate::Error::Internal(format!("signing a token failed: {e}")))?;
        Ok(SignedToken { token, claims })
    }

    /// Verifies `token` as a token of `expected` type: algorithm, signature, header `typ`,
    /// `type` claim, `exp`, `nbf`, `iat` not in the future, `iss`/`aud` when configured.
    /// Unknown `kid`, and `crit` headers, are refused; `jku`, `x5u`, `jwk` are never used.
    pub fn verify(&self, token: &str, expected: TokenType) -> Result<Claims, TokenRejection> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenRejection::Invalid)?;
        if header.alg != self.algorithm {
            return Err(TokenRejection::Invalid);
        }
        // No key ids are configured for HMAC keys: a `kid` selects nothing here.
        if header.kid.is_some() || header.crit.is_some() {
            return Err(TokenRejection::Invalid);
        }
        match header.typ.as_deref() {
            Some(t) if t == expected.typ() => {}
            Some(ACCESS_TYP | REFRESH_TYP) => return Err(TokenRejection::WrongType),
            _ => return Err(TokenRejection::Invalid),
        }
        let validation = match expected {
            TokenType::Access => &self.access_validation,
            TokenType::Refresh => &self.refresh_validation,
        };
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenRejection::Expired,
                _ => TokenRejection::Invalid,
            },
        )?;
        let claims = data.claims;
        if claims.token_type != expected {
            return Err(TokenRejection::WrongType);
        }
        if claims.iat > now_secs() + self.leeway {
            return Err(TokenRejection::Invalid);
        }
        Ok(claims)
    }
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
}
