//! Signed webhooks of the audit events, as the Standard Webhooks specification
//! (<https://www.standardwebhooks.com>) writes them: a JSON payload
//! `{"type", "timestamp", "data"}` with the headers `webhook-id` (the same on every retry, so
//! receivers deduplicate), `webhook-timestamp` (Unix seconds) and `webhook-signature`
//! (`v1,<base64 of HMAC-SHA256(secret, "<id>.<timestamp>.<payload>")>`), under a secret
//! written `whsec_<base64>`.
//!
//! The payload carries what the audit event does, never a code or a token, and before a
//! login the address's pseudonym only (never the address).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::event::{Event, EventKind};

type HmacSha256 = Hmac<Sha256>;

/// The prefix of a secret's written form.
const PREFIX: &str = "whsec_";

/// A webhook signing secret (`whsec_` and the key in base64, as the specification writes
/// it). `Debug` never shows it.
#[derive(Clone)]
pub struct WebhookSecret(Zeroizing<Vec<u8>>);

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(***)")
    }
}

impl WebhookSecret {
    /// Reads `whsec_<base64>` (24 to 64 bytes of key); the error says what is wrong, never
    /// the secret.
    pub fn parse(written: &str) -> Result<WebhookSecret, String> {
        let b64 = written
            .trim()
            .strip_prefix(PREFIX)
            .ok_or_else(|| format!("a webhook secret starts with {PREFIX}"))?;
        let key = STANDARD
            .decode(b64)
            .map_err(|_| "the webhook secret after whsec_ is not base64".to_owned())?;
        if !(24..=64).contains(&key.len()) {
            return Err(format!(
                "the webhook secret's key is {} bytes; use 24 to 64 (32 random bytes)",
                key.len()
            ));
        }
        Ok(WebhookSecret(Zeroizing::new(key)))
    }

    /// A new random secret, in its written form.
    pub fn generate() -> String {
        let key: [u8; 32] = rand::random();
        format!("{PREFIX}{}", STANDARD.encode(key))
    }

    /// The `webhook-signature` header of `payload` sent as message `id` at `timestamp`.
    pub fn sign(&self, id: &str, timestamp: u64, payload: &[u8]) -> String {
        format!("v1,{}", STANDARD.encode(self.mac(id, timestamp, payload)))
    }

    fn mac(&self, id: &str, timestamp: u64, payload: &[u8]) -> [u8; 32] {
        let Ok(mut mac) = <HmacSha256 as Mac>::new_from_slice(&self.0) else {
            unreachable!("HMAC takes keys of every length")
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(payload);
        mac.finalize().into_bytes().into()
    }

    /// Whether `signature` (a `webhook-signature` header: space-separated `v1,<base64>`
    /// entries) holds this secret's signature of `payload` as message `id` at `timestamp`,
    /// and `timestamp` is within `tolerance_secs` of `now`: a receiver's check.
    pub fn verify(
        &self,
        id: &str,
        timestamp: u64,
        payload: &[u8],
        signature: &str,
        (now, tolerance_secs): (u64, u64),
    ) -> bool {
        if now.abs_diff(timestamp) > tolerance_secs {
            return false;
        }
        let expected = self.mac(id, timestamp, payload);
        signature.split(' ').any(|entry| {
            entry
                .strip_prefix("v1,")
                .and_then(|b64| STANDARD.decode(b64).ok())
                .is_some_and(|sig| bool::from(sig.ct_eq(&expected)))
        })
    }
}

/// The webhook payload of `event`: `{"type": "otp.<event name>", "timestamp": RFC 3339,
/// "data": {...}}`; `data` holds the event's details and whom it is about (the subject, the
/// session, the address's pseudonym before a login), the client's IP and user agent, never
/// an address, a code or a token.
pub fn payload(event: &Event) -> Value {
    let mut data = Map::new();
    let mut put = |k: &str, v: Value| {
        if !v.is_null() {
            data.insert(k.to_owned(), v);
        }
    };
    put("subject", json!(event.subject));
    put("session_id", json!(event.session_id));
    put(
        "address",
        json!(event.address.as_ref().map(|a| a.pseudonym().to_owned())),
    );
    put("ip", json!(event.ip.map(|ip| ip.to_string())));
    put("user_agent", json!(event.user_agent));
    put("binding", json!(event.binding.map(|b| b.as_str())));
    put("device", json!(event.device.map(|d| d.as_str())));
    match &event.kind {
        EventKind::CodeWithheld { reason } => put("reason", json!(reason.as_str())),
        EventKind::CodeRefused { limit } => put("limit", json!(limit.as_str())),
        EventKind::MailFailed { mail, .. } => put("mail", json!(mail.as_str())),
        EventKind::LoginSucceeded { method } => put("method", json!(method.as_str())),
        EventKind::VerificationFailed {
            method,
            reason,
            attempts_left,
        } => {
            put("method", json!(method.as_str()));
            put("reason", json!(reason.as_str()));
            put("attempts_left", json!(attempts_left));
        }
        EventKind::LoggedOutAll { sessions } | EventKind::LoggedOutOthers { sessions } => {
            put("sessions", json!(sessions));
        }
        EventKind::SessionsEvicted { count } => put("sessions", json!(count)),
        EventKind::AdminAction { action, actor } => {
            put("action", json!(action.as_str()));
            put("actor", json!(actor));
        }
        _ => {}
    }
    let at = event
        .at
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    json!({
        "type": format!("otp.{}", event.kind.name()),
        "timestamp": rfc3339(at.as_secs(), at.subsec_millis()),
        "data": data,
    })
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` of Unix seconds and milliseconds.
fn rfc3339(secs: u64, millis: u32) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm), for dates from 1970.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn signs_as_the_specification_says() {
        // The example of the Standard Webhooks reference libraries' tests.
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let payload = br#"{"test": 2432232314}"#;
        let signature = secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, payload);
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let now = (1_614_265_330, 300);
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        assert!(secret.verify(id, 1_614_265_330, payload, &signature, now));
        let other = format!("v1,bm9wZQ== {signature}");
        assert!(
            secret.verify(id, 1_614_265_330, payload, &other, now),
            "one of several"
        );
        assert!(
            !secret.verify(id, 1_614_265_330, b"{}", &signature, now),
            "another payload"
        );
        assert!(
            !secret.verify("msg_x", 1_614_265_330, payload, &signature, now),
            "another id"
        );
        assert!(
            !secret.verify(
                id,
                1_614_265_330,
                payload,
                &signature,
                (1_614_265_331 + 300, 300)
            ),
            "too old"
        );
    }

    #[test]
    fn secrets_are_checked_and_hidden() {
        assert!(WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(WebhookSecret::parse("whsec_not base64!").is_err());
        assert!(WebhookSecret::parse("whsec_c2hvcnQ=").is_err(), "5 bytes");
        let written = WebhookSecret::generate();
        let secret = WebhookSecret::parse(&written).unwrap();
        assert_eq!(format!("{secret:?}"), "WebhookSecret(***)");
    }

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_614_265_330, 7), "2021-02-25T15:02:10.007Z");
        assert_eq!(rfc3339(951_782_400, 0), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(4_102_444_799, 999), "2099-12-31T23:59:59.999Z");
    }
}
