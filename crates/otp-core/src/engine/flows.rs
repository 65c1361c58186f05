//! Login flows and known devices: a code belongs to the browser that asked for it, and a
//! browser that logged in to an address before has its own request budget for it.
//!
//! A flow's id (128 random bits) travels in the flow cookie or as `flow_id`; the store
//! only sees its keyed hash ([`FlowKey`]). A known-device cookie is
//! `<device id>.<set at, s>.<MAC>`, the MAC binding the id and time to the address's key
//! (the cookie never holds the address); the store only sees the device id's keyed hash.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;

use super::{ClientInfo, OtpAuth};
use crate::code::{AddressKey, FlowKey};
use crate::config::FlowBinding;
use crate::email::Email;
use crate::error::Error;
use crate::event::Binding;
use crate::primitives::{now_secs, random_id};
use crate::store::KnownDevice;

/// Whether `id` can be a flow or device id: 16 to 64 base64url characters.
pub(crate) fn is_id(id: &str) -> bool {
    (16..=64).contains(&id.len())
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

impl OtpAuth {
    /// The flow a verification presents, and whether it is bound; `OTP_AUTH_FLOW_BINDING`
    /// = `required` refuses a verification without one before anything is compared.
    pub(super) fn presented_flow(
        &self,
        client: &ClientInfo,
    ) -> Result<(Option<FlowKey>, Binding), Error> {
        match client.flow.as_deref().filter(|id| is_id(id)) {
            Some(id) => Ok((Some(self.inner.hasher.flow_key(id)), Binding::Bound)),
            None if self.inner.config.flows.binding == FlowBinding::Required => {
                Err(Error::FlowRequired)
            }
            None => Ok((None, Binding::Unbound)),
        }
    }

    /// A new flow: its id (for the client) and its key (for the store).
    pub(super) fn new_flow(&self) -> (String, FlowKey) {
        let id = random_id();
        let key = self.inner.hasher.flow_key(&id);
        (id, key)
    }

    /// The known device the client's cookie proves for `address`: a well-formed cookie,
    /// its MAC made for this address, within `OTP_AUTH_KNOWN_DEVICE_DAYS`. Whether the
    /// address forgot its devices since is the store's to say.
    pub(super) fn known_device(
        &self,
        address: &AddressKey,
        client: &ClientInfo,
    ) -> Option<KnownDevice> {
        let i = &*self.inner;
        let days = i.config.flows.known_device_days;
        let mut parts = client.device.as_deref()?.split('.');
        let (id, since, mac) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || days == 0 || !is_id(id) {
            return None;
        }
        let since: u64 = since.parse().ok()?;
        let mac = URL_SAFE_NO_PAD.decode(mac).ok()?;
        let expected = i.hasher.device_mac(id, since, address);
        let fresh = since.saturating_add(days * 86_400) > now_secs() && since <= now_secs() + 60;
        (bool::from(expected[..].ct_eq(&mac)) && fresh).then(|| KnownDevice {
            key: i.hasher.device_key(id),
            since,
        })
    }

    /// The known-device cookie's value for a login to `address` from `client`: the
    /// client's device id when it has a well-formed one, else a new one; `None` when
    /// `OTP_AUTH_KNOWN_DEVICE_DAYS` is 0.
    pub(super) fn device_cookie(
        &self,
        address: &AddressKey,
        client: &ClientInfo,
    ) -> Option<String> {
        let i = &*self.inner;
        if i.config.flows.known_device_days == 0 {
            return None;
        }
        let id = client
            .device
            .as_deref()
            .and_then(|c| c.split('.').next())
            .filter(|id| is_id(id))
            .map_or_else(random_id, str::to_owned);
        let since = now_secs();
        let mac = URL_SAFE_NO_PAD.encode(i.hasher.device_mac(&id, since, address));
        Some(format!("{id}.{since}.{mac}"))
    }

    /// Forgets every known device of `email` (`/logout-all`, an email change).
    pub(super) async fn forget_devices(&self, email: &Email) -> Result<(), Error> {
        let i = &*self.inner;
        let address = i.hasher.address_key(email);
        i.store.forget_devices(&address, &i.limits).await?;
        Ok(())
    }
}
