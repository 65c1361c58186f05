//! The decisions of a store, as plain data and functions: what a code request, a
//! verification or a refresh does to the state of one address or one session.
//!
//! The in-memory store is these types under a mutex; a store on a database that decides in
//! its own code (the SQLite example) loads a row into them, calls the same function, and
//! writes the row back in one transaction. The Redis scripts implement the same rules in
//! Lua, and the contract suite ([`crate::contract`]) holds every backend to them.
//!
//! Times are milliseconds since the epoch. Windows are fixed, not sliding: a window starts
//! at the first request counted in it; the failure window at the first failure; reaching
//! the cap locks the address for a full lockout from that moment, and the end of a lockout
//! clears the count.

use std::time::Duration;

use crate::code::{CODE_MAC_LEN, CodeMac, DeviceKey, FlowKey};
use crate::store::{
    AddressLimit, AddressOp, AddressStatus, CallId, DAY, HOUR, IssueOutcome, IssueRequest, Limits,
    Renewal, RotateOutcome, Rotation, SessionAuth, VerifyOutcome, VerifyRequest,
};

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A fixed-window counter: the window starts at the first request counted in it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// When the window started.
    pub start: u64,
    /// Requests counted in it.
    pub count: u32,
}

impl Window {
    /// The count, zero once the window of `length` ms has passed.
    pub fn current(&self, now: u64, length: u64) -> u32 {
        if self.count == 0 || now >= self.start.saturating_add(length) {
            0
        } else {
            self.count
        }
    }

    /// The wait until the window ends when its count has reached `limit`, else `None`.
    pub fn full(&self, now: u64, length: u64, limit: u32) -> Option<u64> {
        (self.current(now, length) >= limit)
            .then(|| self.start.saturating_add(length).saturating_sub(now))
    }

    /// Counts one request, starting a new window if the last one has passed.
    pub fn count(&mut self, now: u64, length: u64) {
        if self.current(now, length) == 0 {
            self.start = now;
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
    }

    /// Until when the window matters (0 when it counts nothing).
    pub fn live_until(&self, length: u64) -> u64 {
        if self.count == 0 {
            0
        } else {
            self.start.saturating_add(length)
        }
    }
}

/// What the last call that changed an address did, kept with its [`CallId`] so that the
/// same call resent gets the same answer and is not counted twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// A code was issued (to the presented flow when `resent`, from a known device when
    /// `known`).
    Issued {
        /// The code replaced the pending code of the presented flow.
        resent: bool,
        /// The request came from a known device of the address.
        known: bool,
    },
    /// A code was verified and its flow consumed (kept to give it back,
    /// [`AddressState::restore`]).
    Verified(FlowTag),
    /// A wrong code was counted.
    Mismatch {
        /// The failures the flow (bound) or the address (unbound) had left.
        attempts_left: u32,
    },
    /// A code was presented while none was pending, and counted as a failure.
    NoCode {
        /// As for [`Recorded::Mismatch`].
        attempts_left: u32,
    },
}

impl Recorded {
    /// The compact form a store keeps: `i` + resent + known (`0`/`1`), `v` + the flow's
    /// [`FlowTag::encode`], `m` or `x` + attempts left in decimal.
    pub fn encode(&self) -> Vec<u8> {
        let bit = |b: bool| if b { b'1' } else { b'0' };
        match *self {
            Recorded::Issued { resent, known } => vec![b'i', bit(resent), bit(known)],
            Recorded::Verified(tag) => {
                let mut v = vec![b'v'];
                v.extend_from_slice(&tag.encode());
                v
            }
            Recorded::Mismatch { attempts_left } => format!("m{attempts_left}").into_bytes(),
            Recorded::NoCode { attempts_left } => format!("x{attempts_left}").into_bytes(),
        }
    }

    /// Reads [`Recorded::encode`]'s form back.
    pub fn decode(b: &[u8]) -> Option<Recorded> {
        let (&what, rest) = b.split_first()?;
        let left = || std::str::from_utf8(rest).ok()?.parse().ok();
        Some(match (what, rest) {
            (b'i', [r, k]) => Recorded::Issued {
                resent: *r == b'1',
                known: *k == b'1',
            },
            (b'v', _) => Recorded::Verified(FlowTag::decode(rest)?),
            (b'm', _) => Recorded::Mismatch {
                attempts_left: left()?,
            },
            (b'x', _) => Recorded::NoCode {
                attempts_left: left()?,
            },
            _ => return None,
        })
    }

    /// The outcome this record answers to the same verification resent.
    fn verify_outcome(&self) -> Option<VerifyOutcome> {
        match *self {
            Recorded::Verified(_) => Some(VerifyOutcome::Verified),
            Recorded::Mismatch { attempts_left } => Some(VerifyOutcome::Mismatch { attempts_left }),
            Recorded::NoCode { attempts_left } => Some(VerifyOutcome::NoCode { attempts_left }),
            Recorded::Issued { .. } => None,
        }
    }
}

/// Which flow a verification consumed, and what kind it was: enough to give it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowTag {
    /// The flow.
    pub key: FlowKey,
    /// Started from a known device of the address.
    pub known: bool,
    /// A signed-in user's flow (step-up, email change): never verified unbound.
    pub signed_in: bool,
    /// Started by an administrator ([`AddressOp::Issue`]): never verified unbound, and
    /// (being `known`) never ended for an unknown device's flow.
    pub admin: bool,
}

impl FlowTag {
    /// The flow's key, then one flag character (`0` + 1 for known + 2 for signed in + 4
    /// for an administrator's).
    pub fn encode(&self) -> [u8; 13] {
        let mut out = [0u8; 13];
        out[..12].copy_from_slice(self.key.as_str().as_bytes());
        out[12] =
            b'0' + u8::from(self.known) + 2 * u8::from(self.signed_in) + 4 * u8::from(self.admin);
        out
    }

    /// Whether an unbound verification may compare this flow's code: neither a signed-in
    /// user's nor an administrator's.
    pub fn unbound_ok(&self) -> bool {
        !self.signed_in && !self.admin
    }

    /// Reads [`FlowTag::encode`]'s form back.
    pub fn decode(b: &[u8]) -> Option<FlowTag> {
        let (key, flags) = b.split_at_checked(12)?;
        let flags = flags.first()?.checked_sub(b'0')?;
        Some(FlowTag {
            key: FlowKey::parse(std::str::from_utf8(key).ok()?)?,
            known: flags & 1 != 0,
            signed_in: flags & 2 != 0,
            admin: flags & 4 != 0,
        })
    }
}

/// One pending login flow of an address: its code, its own failures, and who started it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowState {
    /// The flow, its kind.
    pub tag: FlowTag,
    /// The pending code's MAC.
    pub code: CodeMac,
    /// When the code expires.
    pub expires: u64,
    /// Wrong codes presented with this flow.
    pub failures: u32,
}

/// The request budget of one known device of an address (the address-wide windows'
/// numbers, counted for this device alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceBudget {
    /// The device.
    pub key: DeviceKey,
    /// Its requests in the minute window.
    pub minute: Window,
    /// In the hour window.
    pub hour: Window,
    /// In the day window.
    pub day: Window,
    /// When it last got a code (for the resend cooldown).
    pub last_issue: u64,
}

/// The fixed-size binary forms of [`FlowState`] and [`DeviceBudget`] lists, for a store
/// that keeps them in one column (the SQLite example): 41 and 56 bytes per entry.
pub mod packed {
    use super::{DeviceBudget, FlowState, FlowTag, Window};
    use crate::code::{CODE_MAC_LEN, CodeMac, DeviceKey};

    fn u64_at(b: &[u8], at: usize) -> u64 {
        let mut x = [0u8; 8];
        x.copy_from_slice(&b[at..at + 8]);
        u64::from_le_bytes(x)
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        let mut x = [0u8; 4];
        x.copy_from_slice(&b[at..at + 4]);
        u32::from_le_bytes(x)
    }

    const FLOW: usize = 13 + CODE_MAC_LEN + 8 + 4;

    /// The flows, one after another.
    pub fn flows(flows: &[FlowState]) -> Vec<u8> {
        let mut v = Vec::with_capacity(flows.len() * FLOW);
        for f in flows {
            v.extend_from_slice(&f.tag.encode());
            v.extend_from_slice(&f.code.0);
            v.extend_from_slice(&f.expires.to_le_bytes());
            v.extend_from_slice(&f.failures.to_le_bytes());
        }
        v
    }

    /// Reads [`flows`]'s form back; `None` when it is not one.
    pub fn read_flows(b: &[u8]) -> Option<Vec<FlowState>> {
        if !b.len().is_multiple_of(FLOW) {
            return None;
        }
        b.chunks(FLOW)
            .map(|c| {
                let mut code = [0u8; CODE_MAC_LEN];
                code.copy_from_slice(&c[13..13 + CODE_MAC_LEN]);
                let at = 13 + CODE_MAC_LEN;
                Some(FlowState {
                    tag: FlowTag::decode(&c[..13])?,
                    code: CodeMac(code),
                    expires: u64_at(c, at),
                    failures: u32_at(c, at + 8),
                })
            })
            .collect()
    }

    const DEVICE: usize = 12 + 3 * 12 + 8;

    /// The device budgets, one after another.
    pub fn devices(devices: &[DeviceBudget]) -> Vec<u8> {
        let mut v = Vec::with_capacity(devices.len() * DEVICE);
        for d in devices {
            v.extend_from_slice(d.key.as_str().as_bytes());
            for w in [d.minute, d.hour, d.day] {
                v.extend_from_slice(&w.start.to_le_bytes());
                v.extend_from_slice(&w.count.to_le_bytes());
            }
            v.extend_from_slice(&d.last_issue.to_le_bytes());
        }
        v
    }

    /// Reads [`devices`]'s form back; `None` when it is not one.
    pub fn read_devices(b: &[u8]) -> Option<Vec<DeviceBudget>> {
        if !b.len().is_multiple_of(DEVICE) {
            return None;
        }
        b.chunks(DEVICE)
            .map(|c| {
                let w = |at: usize| Window {
                    start: u64_at(c, at),
                    count: u32_at(c, at + 8),
                };
                Some(DeviceBudget {
                    key: DeviceKey::parse(std::str::from_utf8(&c[..12]).ok()?)?,
                    minute: w(12),
                    hour: w(24),
                    day: w(36),
                    last_issue: u64_at(c, 48),
                })
            })
            .collect()
    }
}

/// Everything about one address, as one Redis hash holds it: its pending flows, the
/// address-wide request windows (for unknown devices), the budgets of its known devices,
/// and the address-wide failures of unbound verifications with their lockout.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AddressState {
    /// The pending flows (at most [`Limits::max_flows`]).
    pub flows: Vec<FlowState>,
    /// Requests from unknown devices in the per-minute window ([`Limits::request_window`]).
    pub minute: Window,
    /// In the hour window.
    pub hour: Window,
    /// In the day window.
    pub day: Window,
    /// The known devices' own budgets (only those counting something).
    pub devices: Vec<DeviceBudget>,
    /// When every known device was last forgotten (seconds since the epoch): a device
    /// cookie set before it is not known ([`crate::store::OtpStore::forget_devices`]).
    pub devices_forgotten_at: u64,
    /// Failed unbound verifications in the failure window.
    pub failures: u32,
    /// When the failure window started.
    pub failure_window_start: u64,
    /// The end of the unbound lockout; 0 when not locked out.
    pub locked_until: u64,
    /// The end of an administrator's lock ([`AddressOp::Lock`]); 0 when not locked.
    pub admin_locked_until: u64,
    /// The last call that changed the state.
    pub last_call: Option<(CallId, Recorded)>,
}

/// Which budget a code request counts against.
enum Budget {
    Address,
    Device(usize),
}

impl AddressState {
    /// Clears a lockout, failure window, flow or device budget that has passed.
    fn expire(&mut self, now: u64, l: &Limits) {
        let lockout = ms(l.lockout);
        if self.locked_until != 0 && now >= self.locked_until {
            self.locked_until = 0;
            self.failures = 0;
        }
        if self.failures > 0 && now >= self.failure_window_start.saturating_add(lockout) {
            self.failures = 0;
        }
        if self.admin_locked_until != 0 && now >= self.admin_locked_until {
            self.admin_locked_until = 0;
        }
        self.flows.retain(|f| now < f.expires);
        let window = ms(l.request_window);
        self.devices.retain(|d| device_live_until(d, window) > now);
    }

    /// When nothing in the state matters any more (the key's expiry in Redis terms): the
    /// state can be forgotten after it.
    pub fn forget_at(&self, limits: &Limits) -> u64 {
        let window = ms(limits.request_window);
        let flows = self.flows.iter().map(|f| f.expires).max().unwrap_or(0);
        let devices = (self.devices.iter())
            .map(|d| device_live_until(d, window))
            .max()
            .unwrap_or(0);
        let failures = if self.failures > 0 {
            self.failure_window_start.saturating_add(ms(limits.lockout))
        } else {
            0
        };
        let forgotten = if self.devices_forgotten_at > 0 {
            (self.devices_forgotten_at.saturating_mul(1000))
                .saturating_add(ms(limits.known_device_lifetime))
        } else {
            0
        };
        flows
            .max(devices)
            .max(self.minute.live_until(window))
            .max(self.hour.live_until(ms(HOUR)))
            .max(self.day.live_until(ms(DAY)))
            .max(failures)
            .max(self.locked_until)
            .max(self.admin_locked_until)
            .max(forgotten)
    }

    /// A code request for this address (the IP bucket is the caller's, counted first).
    ///
    /// The request counts against its known device's own budget when it presents one that
    /// was not forgotten since it was set, else against the address-wide windows; either
    /// way the minute, hour and day limits and the cooldown apply. The code then replaces
    /// the presented flow's code (a resend: its failures are kept) or starts a new flow;
    /// at [`Limits::max_flows`] a new flow ends the least recently issued flow of an
    /// unknown device, and a known device's only when the new one is itself known or
    /// signed in (otherwise the request is refused, [`AddressLimit::Flows`]).
    pub fn issue(&mut self, req: &IssueRequest, now: u64) -> IssueOutcome {
        if let Some((call, Recorded::Issued { resent, known })) = self.last_call
            && call == req.call
        {
            return IssueOutcome::Issued {
                resent,
                known_device: known,
            }; // the same call resent
        }
        let l = &req.limits;
        self.expire(now, l);
        let known_device = req
            .device
            .filter(|d| d.since > self.devices_forgotten_at)
            .map(|d| d.key);
        let budget = match known_device {
            Some(key) => Budget::Device(match self.devices.iter().position(|d| d.key == key) {
                Some(i) => i,
                None => {
                    self.devices.push(DeviceBudget {
                        key,
                        minute: Window::default(),
                        hour: Window::default(),
                        day: Window::default(),
                        last_issue: 0,
                    });
                    self.devices.len() - 1
                }
            }),
            None => Budget::Address,
        };
        let resend = req
            .resend
            .and_then(|k| self.flows.iter().position(|f| f.tag.key == k));
        let known = known_device.is_some();
        let victim = match resend {
            Some(_) => None,
            None => self.victim(l.max_flows, known || req.signed_in),
        };
        if let Some(refused) = self.refusal(req, &budget, victim, now) {
            self.devices.retain(|d| d.day.count > 0);
            return refused;
        }
        let window = ms(l.request_window);
        let (minute, hour, day) = match budget {
            Budget::Address => (&mut self.minute, &mut self.hour, &mut self.day),
            Budget::Device(i) => {
                let d = &mut self.devices[i];
                d.last_issue = now;
                (&mut d.minute, &mut d.hour, &mut d.day)
            }
        };
        minute.count(now, window);
        hour.count(now, ms(HOUR));
        day.count(now, ms(DAY));
        let expires = self.next_expiry(now.saturating_add(ms(req.code_ttl)));
        // A locked address goes through the same limits, and its flow is stored, with a
        // code nobody can present: its requests are counted, cooled down and refused
        // exactly as anyone's, so no answer tells that it is locked.
        let locked = self.admin_locked_until > now;
        let code = if locked {
            CodeMac([0; CODE_MAC_LEN])
        } else {
            req.code_mac
        };
        match resend {
            Some(i) => {
                let f = &mut self.flows[i];
                f.code = code;
                f.expires = expires;
            }
            None => {
                if let Some(Some(i)) = victim {
                    self.flows.remove(i);
                }
                self.flows.push(FlowState {
                    tag: FlowTag {
                        key: req.flow,
                        known,
                        signed_in: req.signed_in,
                        admin: false,
                    },
                    code,
                    expires,
                    failures: 0,
                });
            }
        }
        let resent = resend.is_some();
        if locked {
            // Not recorded: the same call resent is answered `Locked` again, never `Issued`.
            return IssueOutcome::Locked { resent };
        }
        self.last_call = Some((req.call, Recorded::Issued { resent, known }));
        IssueOutcome::Issued {
            resent,
            known_device: known,
        }
    }

    /// `at`, or later than every pending flow's expiry but an administrator's, so that the
    /// most recent flow (the one an unbound verification compares) is always the last one
    /// issued.
    fn next_expiry(&self, at: u64) -> u64 {
        (self.flows.iter())
            .filter(|f| !f.tag.admin)
            .map(|f| f.expires.saturating_add(1))
            .fold(at, u64::max)
    }

    /// The flow a new one must end to stay within `max_flows`: `None` when there is room,
    /// `Some(None)` when only flows it may not end are pending.
    fn victim(&self, max_flows: u32, privileged: bool) -> Option<Option<usize>> {
        if self.flows.len() < max_flows.max(1) as usize {
            return None;
        }
        let oldest = |unknown_only: bool| {
            (self.flows.iter().enumerate())
                .filter(|(_, f)| !unknown_only || !(f.tag.known || f.tag.signed_in))
                .min_by_key(|(_, f)| f.expires)
                .map(|(i, _)| i)
        };
        Some(oldest(true).or_else(|| if privileged { oldest(false) } else { None }))
    }

    /// Why a code request is refused, if it is: the longest wait among the budget's full
    /// windows, its cooldown, and (for a new flow with no room) the pending flows.
    fn refusal(
        &self,
        req: &IssueRequest,
        budget: &Budget,
        victim: Option<Option<usize>>,
        now: u64,
    ) -> Option<IssueOutcome> {
        let l = &req.limits;
        let window = ms(l.request_window);
        let cooldown = ms(l.resend_cooldown);
        let (minute, hour, day, last) = match *budget {
            Budget::Address => {
                // The cooldown runs from the latest code pending for an unknown device.
                let last = (self.flows.iter())
                    .filter(|f| !f.tag.known && !f.tag.signed_in)
                    .map(|f| f.expires.saturating_sub(ms(req.code_ttl)))
                    .max();
                (self.minute, self.hour, self.day, last)
            }
            Budget::Device(i) => {
                let d = &self.devices[i];
                (
                    d.minute,
                    d.hour,
                    d.day,
                    Some(d.last_issue).filter(|&t| t > 0),
                )
            }
        };
        let flows_full = match victim {
            Some(None) => (self.flows.iter())
                .map(|f| f.expires.saturating_sub(now))
                .min(),
            _ => None,
        };
        [
            (
                minute.full(now, window, l.per_address),
                AddressLimit::Minute,
            ),
            (
                hour.full(now, ms(HOUR), l.per_address_hour),
                AddressLimit::Hour,
            ),
            (day.full(now, ms(DAY), l.per_address_day), AddressLimit::Day),
            (
                last.filter(|at| cooldown > 0 && now < at.saturating_add(cooldown))
                    .map(|at| at.saturating_add(cooldown) - now),
                AddressLimit::Cooldown,
            ),
            (flows_full, AddressLimit::Flows),
        ]
        .into_iter()
        .filter_map(|(wait, limit)| wait.map(|w| (w, limit)))
        // The longest wait (retrying earlier would only be refused again); on a tie the
        // first limit named.
        .fold(None, |best: Option<(u64, AddressLimit)>, x| match best {
            Some(b) if b.0 >= x.0 => Some(b),
            _ => Some(x),
        })
        .map(|(wait, limit)| IssueOutcome::AddressLimited {
            retry_after: Duration::from_millis(wait),
            limit,
        })
    }

    /// A verification: checks the client IP's failures first (`ip_full`: the wait when its
    /// window is full, as [`Window::full`] says), so that a limited client learns nothing
    /// of the address; then compares in constant time and consumes the flow, or counts the
    /// failure.
    ///
    /// Bound ([`VerifyRequest::flow`] given): only that flow's code is compared and only
    /// its failures counted; at [`Limits::max_attempts`] the flow ends. A flow that is not
    /// pending is [`VerifyOutcome::NoCode`], counted against nothing of the address.
    /// Unbound: the address's lockout applies, the code of its most recently issued flow
    /// (not a signed-in one) is compared, and a failure counts against the address (its
    /// flows are left as they are).
    ///
    /// The caller counts a failure against the IP's window, unless the call was a resend
    /// (`self.last_call` was already this call).
    pub fn verify(&mut self, req: &VerifyRequest, now: u64, ip_full: Option<u64>) -> VerifyOutcome {
        let l = &req.limits;
        if let Some((call, rec)) = self.last_call
            && call == req.call
            && let Some(outcome) = rec.verify_outcome()
        {
            return outcome;
        }
        if let Some(wait) = ip_full {
            return VerifyOutcome::IpLimited {
                retry_after: Duration::from_millis(wait),
            };
        }
        self.expire(now, l);
        let (outcome, record) = match req.flow {
            Some(key) => self.verify_bound(key, req),
            None => match self.verify_unbound(req, now) {
                Ok(v) => v,
                Err(locked) => return locked,
            },
        };
        self.last_call = Some((req.call, record));
        outcome
    }

    fn verify_bound(&mut self, key: FlowKey, req: &VerifyRequest) -> (VerifyOutcome, Recorded) {
        let max = req.limits.max_attempts;
        let Some(i) = self.flows.iter().position(|f| f.tag.key == key) else {
            let attempts_left = max;
            return (
                VerifyOutcome::NoCode { attempts_left },
                Recorded::NoCode { attempts_left },
            );
        };
        let f = &mut self.flows[i];
        if f.code.ct_eq(&req.code_mac) {
            let tag = f.tag;
            self.flows.remove(i);
            return (VerifyOutcome::Verified, Recorded::Verified(tag));
        }
        f.failures = f.failures.saturating_add(1);
        let attempts_left = max.saturating_sub(f.failures);
        if attempts_left == 0 {
            self.flows.remove(i);
        }
        (
            VerifyOutcome::Mismatch { attempts_left },
            Recorded::Mismatch { attempts_left },
        )
    }

    fn verify_unbound(
        &mut self,
        req: &VerifyRequest,
        now: u64,
    ) -> Result<(VerifyOutcome, Recorded), VerifyOutcome> {
        let l = &req.limits;
        if self.locked_until > now {
            return Err(VerifyOutcome::LockedOut {
                retry_after: Duration::from_millis(self.locked_until - now),
            });
        }
        let latest = (self.flows.iter().enumerate())
            .filter(|(_, f)| f.tag.unbound_ok())
            .max_by_key(|(_, f)| f.expires)
            .map(|(i, f)| (i, f.code));
        if let Some((i, code)) = latest
            && code.ct_eq(&req.code_mac)
        {
            let tag = self.flows.remove(i).tag;
            self.failures = 0;
            return Ok((VerifyOutcome::Verified, Recorded::Verified(tag)));
        }
        if self.failures == 0 {
            self.failure_window_start = now;
        }
        self.failures = self.failures.saturating_add(1);
        let attempts_left = l.max_attempts.saturating_sub(self.failures);
        if attempts_left == 0 {
            self.locked_until = now.saturating_add(ms(l.lockout));
        }
        Ok(if latest.is_some() {
            (
                VerifyOutcome::Mismatch { attempts_left },
                Recorded::Mismatch { attempts_left },
            )
        } else {
            (
                VerifyOutcome::NoCode { attempts_left },
                Recorded::NoCode { attempts_left },
            )
        })
    }

    /// Deletes the pending code of `flow` if it is `code_mac`.
    pub fn discard(&mut self, flow: &FlowKey, code_mac: &CodeMac) {
        self.flows
            .retain(|f| !(f.tag.key == *flow && f.code.ct_eq(code_mac)));
    }

    /// Gives back the flow `req` consumed: its code is pending again for `req.code_ttl`,
    /// unless the flow is pending again already (a newer request wins). The flow is
    /// `req.flow`, or for an unbound verification the one this call consumed. The last
    /// call is forgotten, so its resend is a new attempt.
    pub fn restore(&mut self, req: &VerifyRequest, now: u64) {
        let consumed = match self.last_call {
            Some((call, Recorded::Verified(tag))) if call == req.call => Some(tag),
            _ => None,
        };
        let Some(tag) = consumed.or_else(|| {
            req.flow.map(|key| FlowTag {
                key,
                known: false,
                signed_in: false,
                admin: false,
            })
        }) else {
            return;
        };
        self.flows.retain(|f| now < f.expires);
        if self.flows.iter().any(|f| f.tag.key == tag.key) {
            return;
        }
        self.flows.push(FlowState {
            tag,
            code: req.code_mac,
            expires: now.saturating_add(ms(req.code_ttl)),
            failures: 0,
        });
        self.last_call = None;
    }

    /// Forgets every known device of the address (`now` in milliseconds).
    pub fn forget_devices(&mut self, now: u64) {
        self.devices.clear();
        self.devices_forgotten_at = now / 1000;
    }

    /// An administrator's operation ([`AddressOp`]); the state after it.
    pub fn administer(&mut self, op: &AddressOp, now: u64, limits: &Limits) -> AddressStatus {
        self.expire(now, limits);
        let mut issued = false;
        match op {
            AddressOp::Read => {}
            AddressOp::Lock { duration } => {
                self.admin_locked_until = now.saturating_add(ms(*duration)).max(now + 1);
                self.flows.clear();
            }
            AddressOp::Unlock => {
                self.admin_locked_until = 0;
                self.locked_until = 0;
                self.failures = 0;
                self.failure_window_start = 0;
            }
            AddressOp::Issue {
                flow,
                code_mac,
                ttl,
            } if self.admin_locked_until == 0 => {
                self.flows.retain(|f| f.tag.key != *flow);
                if let Some(Some(i)) = self.victim(limits.max_flows, true) {
                    self.flows.remove(i);
                }
                self.flows.push(FlowState {
                    tag: FlowTag {
                        key: *flow,
                        known: true,
                        signed_in: false,
                        admin: true,
                    },
                    code: *code_mac,
                    expires: now.saturating_add(ms(*ttl)),
                    failures: 0,
                });
                issued = true;
            }
            AddressOp::Issue { .. } => {}
        }
        self.status(now, limits, issued)
    }

    /// What an administrator sees of the state at `now`.
    fn status(&self, now: u64, limits: &Limits, issued: bool) -> AddressStatus {
        let window = ms(limits.request_window);
        AddressStatus {
            admin_locked_until: Some(self.admin_locked_until).filter(|&t| t > now),
            locked_out_until: Some(self.locked_until).filter(|&t| t > now),
            failures: self.failures,
            flows: u32::try_from(self.flows.len()).unwrap_or(u32::MAX),
            minute: self.minute.current(now, window),
            hour: self.hour.current(now, ms(HOUR)),
            day: self.day.current(now, ms(DAY)),
            known_devices: u32::try_from(self.devices.len()).unwrap_or(u32::MAX),
            devices_forgotten_at: Some(self.devices_forgotten_at).filter(|&t| t > 0),
            issued,
        }
    }
}

/// Until when a device budget counts something.
fn device_live_until(d: &DeviceBudget, window: u64) -> u64 {
    d.minute
        .live_until(window)
        .max(d.hour.live_until(ms(HOUR)))
        .max(d.day.live_until(ms(DAY)))
}

/// The refresh state of one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshState {
    /// The current refresh token's `jti`.
    pub current_jti: String,
    /// The `jti` the current one replaced, and when (ms): the only token the reuse
    /// interval accepts besides the current one.
    pub parent: Option<(String, u64)>,
    /// The session's last authentication.
    pub auth: SessionAuth,
}

impl RefreshState {
    /// The state of a new session.
    pub fn new(jti: &str, auth: SessionAuth) -> RefreshState {
        RefreshState {
            current_jti: jti.to_owned(),
            parent: None,
            auth,
        }
    }

    /// A fresh authentication ([`crate::store::TokenBlacklist::renew_session`]): recorded.
    pub fn renew(&mut self, r: &Renewal) {
        self.auth = r.auth;
    }

    /// A rotation: the current token rotates (the same rotation resent answers the same);
    /// the immediate parent within the reuse interval gets [`RotateOutcome::Reissued`];
    /// anything else is [`RotateOutcome::Reused`], and the caller ends the session. On
    /// [`RotateOutcome::Rotated`] the caller also records the refresh time and the new
    /// expiry.
    pub fn rotate(&mut self, r: &Rotation, now: u64) -> RotateOutcome {
        if self.current_jti == r.presented_jti {
            let parent = std::mem::replace(&mut self.current_jti, r.new_jti.clone());
            self.parent = Some((parent, now));
            return RotateOutcome::Rotated { auth: self.auth };
        }
        match &self.parent {
            Some((parent, _)) if *parent == r.presented_jti && self.current_jti == r.new_jti => {
                RotateOutcome::Rotated { auth: self.auth }
            }
            Some((parent, at))
                if *parent == r.presented_jti
                    && !r.reuse_interval.is_zero()
                    && now.saturating_sub(*at) <= ms(r.reuse_interval) =>
            {
                RotateOutcome::Reissued {
                    current_jti: self.current_jti.clone(),
                    auth: self.auth,
                }
            }
            _ => RotateOutcome::Reused,
        }
    }
}
