//! Asymmetric signing keys and the JWKS.

use otp_core::config::JwtAlgorithm;
use otp_core::token::Claims;
use serde_json::json;

use super::common::start;
use crate::{TEST_SECRET, Target, TestServer, test_config};

/// Asymmetric keys: tokens carry the key's thumbprint as `kid` and verify from the JWKS
/// alone; the HMAC secret never appears there.
pub async fn jwks(t: Target) {
    let s = start(t).await;
    let r = s.send(s.http.get(s.url("/auth/jwks.json"))).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"keys": []}));

    for (alg, file) in [
        (JwtAlgorithm::ES256, "ec-a.pem"),
        (JwtAlgorithm::EdDSA, "ed25519-a.pem"),
        (JwtAlgorithm::RS256, "rsa-a.pem"),
    ] {
        let s = TestServer::start(t, {
            let mut c = test_config();
            c.tokens.algorithm = alg;
            c.tokens.secret = None;
            c.codes.secret = Some(TEST_SECRET.into());
            c.tokens.private_key_file = Some(crate::test_key(file));
            c
        })
        .await;
        let session = s.login("keys@example.com").await;
        let r = s.send(s.http.get(s.url("/auth/jwks.json"))).await;
        assert_eq!(r.status, 200);
        assert!(r.header("cache-control").unwrap().contains("max-age"));
        let jwks = r.json();
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 1, "{jwks}");
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(
                keys[0].get(private).is_none(),
                "{alg:?} publishes {private}"
            );
        }
        let header = jsonwebtoken::decode_header(&session.access).unwrap();
        assert_eq!(header.kid.as_deref(), keys[0]["kid"].as_str(), "{alg:?}");
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(keys[0].clone()).unwrap();
        let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
        let mut v = jsonwebtoken::Validation::new(header.alg);
        v.validate_aud = false;
        let claims = jsonwebtoken::decode::<Claims>(&session.access, &key, &v)
            .unwrap()
            .claims;
        assert_eq!(claims.email, "keys@example.com");
        assert_eq!(s.protected(Some(&session.access)).await.status, 200);
        if alg == JwtAlgorithm::ES256 {
            // The mirror of a valid signature (`s` → `n − s`) is valid ECDSA too, and
            // refused: one token, one encoding.
            let mirrored = mirror_es256_signature(&session.access);
            assert_ne!(mirrored, session.access);
            let r = s.protected(Some(&mirrored)).await;
            r.assert_problem(401);
        }
        let r = s.refresh(Some(&session.refresh)).await;
        assert_eq!(r.status, 200, "{alg:?}: {}", r.text());
    }
}

/// `token` with its ES256 signature's `s` replaced by `n − s` (P-256's order `n`).
fn mirror_es256_signature(token: &str) -> String {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    const N: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63,
        0x25, 0x51,
    ];
    let (input, signature) = token.rsplit_once('.').unwrap();
    let mut sig = URL_SAFE_NO_PAD.decode(signature).unwrap();
    assert_eq!(sig.len(), 64);
    let mut borrow = 0_i16;
    for i in (0..32).rev() {
        let d = i16::from(N[i]) - i16::from(sig[32 + i]) - borrow;
        borrow = i16::from(d < 0);
        sig[32 + i] = u8::try_from(d + 256 * borrow).unwrap();
    }
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}
