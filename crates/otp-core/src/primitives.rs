//! The lowest layer: random identifiers and the clock, used by every other module and by
//! store and mailer implementations.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;

/// Draws a 128-bit random identifier, base64url (22 characters): token ids, session ids,
/// mail `Message-ID`s.
pub fn random_id() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// 72 random bits, base64url (12 characters): for ids that only have to be unique among a
/// few (a subject's sessions), never for secrets.
pub(crate) fn short_random_id() -> String {
    let bytes: [u8; 9] = rand::rng().random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The current time in seconds since the epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
