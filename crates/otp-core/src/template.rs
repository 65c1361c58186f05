//! The mails' templates: subject, plain text and HTML, with placeholders, in one or more
//! languages. Each set holds three mails: the code mail (logins and re-authentications),
//! the code mail of an email change (to the new address: it says what the code does, so
//! that nobody reads it out to someone who "needs a login code"), and the notice that tells
//! the old address of an email change.
//!
//! # Placeholders
//!
//! | placeholder    | value                                                        |
//! |----------------|--------------------------------------------------------------|
//! | `{code}`       | the code                                                     |
//! | `{minutes}`    | how many minutes the code lives (rounded up)                 |
//! | `{app_name}`   | the application name (`MAIL_FROM_NAME`)                      |
//! | `{email}`      | the normalized recipient                                     |
//! | `{link}`       | the sign-in link, or nothing when the mail carries none      |
//! | `{link_block}` | the rendered link snippet, or nothing when there is no link  |
//!
//! The email-change code mail ([`Templates::email_change_subject`] and the two after it)
//! takes `{code}`, `{minutes}`, `{app_name}` and `{email}` (the new address, its
//! recipient), and never carries a link.
//!
//! The email-change notice ([`Templates::email_changed_subject`] and the two after it)
//! carries no code and no link: its placeholders are `{app_name}`, `{email}` (the old
//! address, its recipient) and `{new_email}` (the new address, masked as `a•••@example.com`
//! so that a mailbox the user no longer controls does not learn it whole).
//!
//! The link snippets, [`Templates::text_link`] and [`Templates::html_link`], offer the
//! sign-in link; the main text and HTML templates place them with `{link_block}`, so one set
//! of templates reads well with and without a link.
//!
//! Every placeholder works in every template, except that `{link_block}` renders as nothing
//! in the subject and inside the link snippets themselves. Anything else in braces stays as
//! written. Substitution is a single pass: a value that itself contains `{code}` is not
//! expanded again. In the HTML templates each value is HTML-escaped (so `{link}` is safe in
//! an `href="…"` attribute); the subject and text get the values as they are (the code is
//! digits, the address validated, the application name free of control characters, the link
//! a URL), and the rendered subject has every CR and LF replaced by a space.
//!
//! # Languages
//!
//! [`MailTemplates`] holds one [`Templates`] set per language tag and picks one for a
//! request's `Accept-Language` header with [`MailTemplates::select`].

use std::collections::BTreeMap;
use std::sync::LazyLock;

use crate::config::MailSettings;

/// The templates of the login mail in one language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Templates {
    /// Subject line.
    pub subject: String,
    /// Plain-text body; `{link_block}` marks where [`Templates::text_link`] goes.
    pub text: String,
    /// HTML body; `{link_block}` marks where [`Templates::html_link`] goes.
    pub html: String,
    /// Plain-text snippet offering the sign-in link, rendered in place of `{link_block}` in
    /// [`Templates::text`] when the mail carries a link.
    pub text_link: String,
    /// HTML snippet offering the sign-in link, rendered in place of `{link_block}` in
    /// [`Templates::html`] when the mail carries a link.
    pub html_link: String,
    /// Subject of the code mailed to the new address of an email change.
    pub email_change_subject: String,
    /// Plain-text body of that mail.
    pub email_change_text: String,
    /// HTML body of that mail.
    pub email_change_html: String,
    /// Subject of the notice mailed to the old address after an email change.
    pub email_changed_subject: String,
    /// Plain-text body of that notice.
    pub email_changed_text: String,
    /// HTML body of that notice.
    pub email_changed_html: String,
}

/// The values the email-change notice is rendered with.
#[derive(Debug, Clone, Copy)]
pub struct NoticeValues<'a> {
    /// The application name (`MAIL_FROM_NAME`).
    pub app_name: &'a str,
    /// The old address: the notice's recipient.
    pub email: &'a str,
    /// The new address, masked (`a•••@example.com`).
    pub new_email: &'a str,
}

/// The values a template is rendered with.
#[derive(Debug, Clone, Copy)]
pub struct TemplateValues<'a> {
    /// The code.
    pub code: &'a str,
    /// How many minutes the code lives (rounded up).
    pub minutes: u64,
    /// The application name (`MAIL_FROM_NAME`).
    pub app_name: &'a str,
    /// The normalized recipient.
    pub email: &'a str,
    /// The sign-in link (an absolute `http(s)` URL), or `None` when the mail offers only the
    /// code.
    pub link: Option<&'a str>,
}

/// A rendered mail: subject, text, HTML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body.
    pub html: String,
}

/// The built-in English set.
impl Default for Templates {
    fn default() -> Self {
        english()
    }
}

fn english() -> Templates {
    Templates {
        subject: "Your {app_name} login code: {code}".to_owned(),
        text: "Your login code for {app_name} is:\n\n    {code}\n\n\
               It expires in {minutes} minutes and can be used once.\n\n\
               {link_block}\
               If you did not ask to sign in to {app_name} as {email}, you can safely ignore \
               this mail: nobody can sign in without it.\n"
            .to_owned(),
        html: "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"></head>\n\
               <body style=\"font-family: sans-serif; color: #222;\">\n\
               <p>Your login code for {app_name} is:</p>\n\
               <p style=\"font-size: 28px; font-weight: bold; letter-spacing: 4px;\">{code}</p>\n\
               <p>It expires in {minutes} minutes and can be used once.</p>\n\
               {link_block}\
               <p style=\"color: #666; font-size: 13px;\">If you did not ask to sign in to \
               {app_name} as {email}, you can safely ignore this mail: nobody can sign in \
               without it.</p>\n\
               </body></html>\n"
            .to_owned(),
        text_link: "Or sign in with this link (it works once, like the code):\n\n    \
                    {link}\n\n"
            .to_owned(),
        html_link: "<p>Or sign in with this link (it works once, like the code):</p>\n\
                    <p><a href=\"{link}\" style=\"display: inline-block; padding: 8px 16px; \
                    border: 1px solid #ccc; border-radius: 4px; background: #f4f4f4; \
                    color: #222; font-size: 14px; text-decoration: none;\">Sign in to \
                    {app_name}</a></p>\n\
                    <p style=\"color: #666; font-size: 12px; word-break: break-all;\">If the \
                    button does not work, open this address in your browser:<br>{link}</p>\n"
            .to_owned(),
        email_change_subject: "Confirm your new {app_name} address: {code}".to_owned(),
        email_change_text: "To move your {app_name} account to this address ({email}), enter \
                            this code:\n\n    {code}\n\n\
                            It expires in {minutes} minutes and can be used once. Never give \
                            it to anyone: it moves an account to your address.\n\n\
                            If you did not ask for this, ignore this mail: nothing changes \
                            without the code.\n"
            .to_owned(),
        email_change_html: "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
                            </head>\n<body style=\"font-family: sans-serif; color: #222;\">\n\
                            <p>To move your {app_name} account to this address ({email}), \
                            enter this code:</p>\n\
                            <p style=\"font-size: 28px; font-weight: bold; letter-spacing: \
                            4px;\">{code}</p>\n\
                            <p>It expires in {minutes} minutes and can be used once. Never \
                            give it to anyone: it moves an account to your address.</p>\n\
                            <p style=\"color: #666; font-size: 13px;\">If you did not ask for \
                            this, ignore this mail: nothing changes without the code.</p>\n\
                            </body></html>\n"
            .to_owned(),
        email_changed_subject: "Your {app_name} address was changed".to_owned(),
        email_changed_text: "The address of your {app_name} account was changed from {email} \
                             to {new_email}. This address no longer signs in to it.\n\n\
                             If you made this change, there is nothing to do. If you did not, \
                             contact {app_name} at once: someone else may control your \
                             account.\n"
            .to_owned(),
        email_changed_html: "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
                             </head>\n<body style=\"font-family: sans-serif; color: #222;\">\n\
                             <p>The address of your {app_name} account was changed from \
                             {email} to <b>{new_email}</b>. This address no longer signs in to \
                             it.</p>\n\
                             <p>If you made this change, there is nothing to do. If you did \
                             not, contact {app_name} at once: someone else may control your \
                             account.</p>\n\
                             </body></html>\n"
            .to_owned(),
    }
}

fn german() -> Templates {
    Templates {
        subject: "Ihr Anmeldecode für {app_name}: {code}".to_owned(),
        text: "Ihr Anmeldecode für {app_name} lautet:\n\n    {code}\n\n\
               Er ist {minutes} Minuten lang gültig und kann nur einmal verwendet werden.\n\n\
               {link_block}\
               Falls Sie sich nicht als {email} bei {app_name} anmelden wollten, können Sie \
               diese E-Mail einfach ignorieren. Ohne sie kann sich niemand anmelden.\n"
            .to_owned(),
        html: "<!doctype html>\n<html lang=\"de\"><head><meta charset=\"utf-8\"></head>\n\
               <body style=\"font-family: sans-serif; color: #222;\">\n\
               <p>Ihr Anmeldecode für {app_name} lautet:</p>\n\
               <p style=\"font-size: 28px; font-weight: bold; letter-spacing: 4px;\">{code}</p>\n\
               <p>Er ist {minutes} Minuten lang gültig und kann nur einmal verwendet werden.</p>\n\
               {link_block}\
               <p style=\"color: #666; font-size: 13px;\">Falls Sie sich nicht als {email} bei \
               {app_name} anmelden wollten, können Sie diese E-Mail einfach ignorieren. Ohne \
               sie kann sich niemand anmelden.</p>\n\
               </body></html>\n"
            .to_owned(),
        text_link: "Oder melden Sie sich über diesen Link an (er funktioniert wie der Code nur \
                    einmal):\n\n    {link}\n\n"
            .to_owned(),
        html_link: "<p>Oder melden Sie sich über diesen Link an (er funktioniert wie der Code \
                    nur einmal):</p>\n\
                    <p><a href=\"{link}\" style=\"display: inline-block; padding: 8px 16px; \
                    border: 1px solid #ccc; border-radius: 4px; background: #f4f4f4; \
                    color: #222; font-size: 14px; text-decoration: none;\">Bei {app_name} \
                    anmelden</a></p>\n\
                    <p style=\"color: #666; font-size: 12px; word-break: break-all;\">Falls \
                    die Schaltfläche nicht funktioniert, öffnen Sie diese Adresse in Ihrem \
                    Browser:<br>{link}</p>\n"
            .to_owned(),
        email_change_subject: "Bestätigen Sie Ihre neue Adresse bei {app_name}: {code}".to_owned(),
        email_change_text: "Um Ihr Konto bei {app_name} auf diese Adresse ({email}) umzustellen, \
                            geben Sie diesen Code ein:\n\n    {code}\n\n\
                            Er ist {minutes} Minuten lang gültig und kann nur einmal verwendet \
                            werden. Geben Sie ihn niemandem weiter: Er stellt ein Konto auf \
                            Ihre Adresse um.\n\n\
                            Falls Sie das nicht angefordert haben, ignorieren Sie diese \
                            E-Mail: Ohne den Code ändert sich nichts.\n"
            .to_owned(),
        email_change_html: "<!doctype html>\n<html lang=\"de\"><head><meta charset=\"utf-8\">\
                            </head>\n<body style=\"font-family: sans-serif; color: #222;\">\n\
                            <p>Um Ihr Konto bei {app_name} auf diese Adresse ({email}) \
                            umzustellen, geben Sie diesen Code ein:</p>\n\
                            <p style=\"font-size: 28px; font-weight: bold; letter-spacing: \
                            4px;\">{code}</p>\n\
                            <p>Er ist {minutes} Minuten lang gültig und kann nur einmal \
                            verwendet werden. Geben Sie ihn niemandem weiter: Er stellt ein \
                            Konto auf Ihre Adresse um.</p>\n\
                            <p style=\"color: #666; font-size: 13px;\">Falls Sie das nicht \
                            angefordert haben, ignorieren Sie diese E-Mail: Ohne den Code \
                            ändert sich nichts.</p>\n\
                            </body></html>\n"
            .to_owned(),
        email_changed_subject: "Ihre Adresse bei {app_name} wurde geändert".to_owned(),
        email_changed_text: "Die Adresse Ihres Kontos bei {app_name} wurde von {email} in \
                             {new_email} geändert. Mit dieser Adresse können Sie sich nicht \
                             mehr anmelden.\n\n\
                             Wenn Sie das selbst waren, ist nichts weiter zu tun. Wenn nicht, \
                             wenden Sie sich sofort an {app_name}: Jemand anderes könnte Ihr \
                             Konto kontrollieren.\n"
            .to_owned(),
        email_changed_html: "<!doctype html>\n<html lang=\"de\"><head><meta charset=\"utf-8\">\
                             </head>\n<body style=\"font-family: sans-serif; color: #222;\">\n\
                             <p>Die Adresse Ihres Kontos bei {app_name} wurde von {email} in \
                             <b>{new_email}</b> geändert. Mit dieser Adresse können Sie sich \
                             nicht mehr anmelden.</p>\n\
                             <p>Wenn Sie das selbst waren, ist nichts weiter zu tun. Wenn \
                             nicht, wenden Sie sich sofort an {app_name}: Jemand anderes könnte \
                             Ihr Konto kontrollieren.</p>\n\
                             </body></html>\n"
            .to_owned(),
    }
}

impl Templates {
    /// Renders the subject, text and HTML (the placeholders are listed in the
    /// [module documentation](crate::mailer::template)).
    pub fn render(&self, v: &TemplateValues<'_>) -> Rendered {
        let minutes = v.minutes.to_string();
        let link = v.link.unwrap_or("");
        let plain = Values {
            code: v.code,
            minutes: &minutes,
            app_name: v.app_name,
            email: v.email,
            link,
            link_block: "",
        };
        let (code, app_name, email, link) = (
            escape_html(v.code),
            escape_html(v.app_name),
            escape_html(v.email),
            escape_html(link),
        );
        let html = Values {
            code: &code,
            minutes: &minutes,
            app_name: &app_name,
            email: &email,
            link: &link,
            link_block: "",
        };
        let (text_block, html_block) = match v.link {
            Some(_) => (
                substitute(&self.text_link, &plain),
                substitute(&self.html_link, &html),
            ),
            None => (String::new(), String::new()),
        };
        Rendered {
            // A subject is one header line: no line breaks whatever the template says.
            subject: substitute(&self.subject, &plain).replace(['\r', '\n'], " "),
            text: substitute(
                &self.text,
                &Values {
                    link_block: &text_block,
                    ..plain
                },
            ),
            html: substitute(
                &self.html,
                &Values {
                    link_block: &html_block,
                    ..html
                },
            ),
        }
    }
}

impl Templates {
    /// Renders the code mail of an email change (placeholders `{code}`, `{minutes}`,
    /// `{app_name}` and `{email}`, the new address; no link).
    pub fn render_email_change(&self, v: &TemplateValues<'_>) -> Rendered {
        let mail = Templates {
            subject: self.email_change_subject.clone(),
            text: self.email_change_text.clone(),
            html: self.email_change_html.clone(),
            ..self.clone()
        };
        mail.render(&TemplateValues { link: None, ..*v })
    }

    /// Renders the email-change notice (placeholders `{app_name}`, `{email}` and
    /// `{new_email}`; see the [module documentation](crate::mailer::template)).
    pub fn render_email_changed(&self, v: &NoticeValues<'_>) -> Rendered {
        let plain = [
            ("{app_name}", v.app_name),
            ("{email}", v.email),
            ("{new_email}", v.new_email),
        ];
        let (app_name, email, new_email) = (
            escape_html(v.app_name),
            escape_html(v.email),
            escape_html(v.new_email),
        );
        let html = [
            ("{app_name}", app_name.as_str()),
            ("{email}", email.as_str()),
            ("{new_email}", new_email.as_str()),
        ];
        Rendered {
            subject: replace_placeholders(&self.email_changed_subject, &plain)
                .replace(['\r', '\n'], " "),
            text: replace_placeholders(&self.email_changed_text, &plain),
            html: replace_placeholders(&self.email_changed_html, &html),
        }
    }
}

#[derive(Clone, Copy)]
struct Values<'a> {
    code: &'a str,
    minutes: &'a str,
    app_name: &'a str,
    email: &'a str,
    link: &'a str,
    link_block: &'a str,
}

fn substitute(t: &str, v: &Values<'_>) -> String {
    replace_placeholders(
        t,
        &[
            ("{code}", v.code),
            ("{minutes}", v.minutes),
            ("{app_name}", v.app_name),
            ("{email}", v.email),
            ("{link}", v.link),
            ("{link_block}", v.link_block),
        ],
    )
}

/// Replaces each placeholder of `table` (each starting with `{`) in `t` by its value, in
/// one pass, so a value that itself reads like a placeholder is not expanded again.
pub(crate) fn replace_placeholders(t: &str, table: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(t.len() + 64);
    let mut rest = t;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let (value, len) = table
            .iter()
            .find(|(p, _)| tail.starts_with(p))
            .map_or(("{", 1), |(p, v)| (*v, p.len()));
        out.push_str(value);
        rest = &tail[len..];
    }
    out.push_str(rest);
    out
}

/// Escapes `&`, `<`, `>`, `"` and `'` for HTML text and attribute values.
pub(crate) fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Longest `Accept-Language` header [`MailTemplates::select`] reads; a longer one is ignored
/// as a whole (browsers send well under 200 bytes).
const MAX_ACCEPT_LANGUAGE_LEN: usize = 1024;

/// How many language ranges of an `Accept-Language` header [`MailTemplates::select`] reads;
/// the rest are ignored.
const MAX_LANGUAGE_RANGES: usize = 32;

// Never used while the invariant "the default language has a set" holds; there so that
// `MailTemplates::default_entry` needs no panic.
static FALLBACK: LazyLock<Templates> = LazyLock::new(english);

/// The login mail's templates in several languages, and the language used when a request
/// asks for none of them.
///
/// Language tags are kept lowercase (`en`, `de`, `pt-br`) and compared case-insensitively.
/// The default language always has a set.
///
/// ```
/// use otp_core::mailer::template::{MailTemplates, TemplateValues};
///
/// let templates = MailTemplates::builtin().with_default_language("de")?;
/// let values = TemplateValues {
///     code: "123456",
///     minutes: 5,
///     app_name: "Acme",
///     email: "ada@example.com",
///     link: None,
/// };
/// let (lang, mail) = templates.render(Some("en-GB,en;q=0.9"), &values);
/// assert_eq!(lang, "en");
/// assert_eq!(mail.subject, "Your Acme login code: 123456");
/// let (lang, mail) = templates.render(Some("fr-FR"), &values);
/// assert_eq!(lang, "de");
/// assert_eq!(mail.subject, "Ihr Anmeldecode für Acme: 123456");
/// # Ok::<(), otp_core::config::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailTemplates {
    sets: BTreeMap<String, Templates>,
    default: String,
}

/// [`MailTemplates::builtin`]: English and German, English by default.
impl Default for MailTemplates {
    fn default() -> Self {
        MailTemplates::builtin()
    }
}

impl MailTemplates {
    /// The built-in sets: English (`en`, the default, the same as [`Templates::default`])
    /// and German (`de`).
    pub fn builtin() -> Self {
        MailTemplates::new(english()).with_language("de", german())
    }

    /// Only English: `templates` under `en`, which is the default language. Add more
    /// languages with [`MailTemplates::with_language`].
    pub fn new(templates: Templates) -> Self {
        MailTemplates {
            sets: BTreeMap::from([("en".to_owned(), templates)]),
            default: "en".to_owned(),
        }
    }

    /// Adds the set for language `tag` (such as `fr` or `pt-BR`; stored lowercase), or
    /// replaces the one it has.
    pub fn with_language(mut self, tag: &str, templates: Templates) -> Self {
        self.sets.insert(normalize_tag(tag), templates);
        self
    }

    /// Makes `tag` the language used when a request asks for none of the configured ones.
    ///
    /// `tag` is looked up like a request's language range: `de-CH` selects `de` when there
    /// is no `de-ch` set.
    ///
    /// # Errors
    ///
    /// A [`crate::config::ConfigError`] naming `OTP_AUTH_MAIL_DEFAULT_LANGUAGE` when no set matches
    /// `tag`.
    pub fn with_default_language(mut self, tag: &str) -> Result<Self, crate::config::ConfigError> {
        let wanted = normalize_tag(tag);
        let found = lookup_candidates(&wanted)
            .find(|t| self.sets.contains_key(*t))
            .map(str::to_owned);
        match found {
            Some(lang) => {
                self.default = lang;
                Ok(self)
            }
            None => Err(crate::config::ConfigError::one(format!(
                "{} is {tag:?}, but there are mail templates only for: {}",
                MailSettings::VARS.default_language,
                self.languages().collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    /// The languages that have a set, lowercase, in alphabetical order.
    pub fn languages(&self) -> impl Iterator<Item = &str> {
        self.sets.keys().map(String::as_str)
    }

    /// The language used when a request asks for none of the configured ones.
    pub fn default_language(&self) -> &str {
        &self.default
    }

    /// The set for exactly the language `tag` (case-insensitive; no fallback).
    pub fn get(&self, tag: &str) -> Option<&Templates> {
        self.sets.get(&normalize_tag(tag))
    }

    /// Picks the set for a request's `Accept-Language` header (RFC 9110, section 12.5.4),
    /// with the "lookup" scheme of RFC 4647, section 3.4; returns its language and the set.
    ///
    /// - The header is a comma-separated list of language ranges (`de-CH`, `en`, `*`), each
    ///   optionally weighted with `;q=` (0 to 1, at most three decimals, default 1). Empty
    ///   list elements and whitespace around elements and parameters are allowed;
    ///   comparisons ignore case.
    /// - An element whose range is not a well-formed language range (letters, then subtags
    ///   of letters and digits, each 1 to 8 long, separated by `-`; or `*`) or whose weight
    ///   is malformed or given twice is skipped: a garbled weight is not taken as a wish.
    ///   Parameters other than `q` are ignored.
    /// - `q=0` means "not acceptable": that language is never picked for this header, not
    ///   even by truncating another range (`de-CH, de;q=0` does not pick `de`). `*;q=0`
    ///   changes nothing.
    /// - The other ranges are tried by weight, highest first, ties in header order. Each is
    ///   tried as written, then with its last subtag removed, and so on (`de-CH-1996`,
    ///   `de-ch`, `de`; a single-letter subtag left at the end goes too, so `en-x-foo`
    ///   tries `en` after `en-x-foo`). Lookup only truncates the range, never extends it:
    ///   `pt` does not pick a `pt-br` set. `*` picks the default language.
    /// - When nothing matches (no header, an empty, malformed or refused-only one), the
    ///   default language is picked, even if the header refused it: a mail is sent anyway.
    /// - To bound the work on hostile input, a header longer than 1 KiB is ignored as a
    ///   whole and only its first 32 non-empty elements are read.
    pub fn select(&self, accept_language: Option<&str>) -> (&str, &Templates) {
        accept_language
            .and_then(|h| self.lookup(h))
            .unwrap_or_else(|| self.default_entry())
    }

    /// Renders the mail in the language [`MailTemplates::select`] picks for
    /// `accept_language`; returns that language and the mail.
    pub fn render(
        &self,
        accept_language: Option<&str>,
        values: &TemplateValues<'_>,
    ) -> (&str, Rendered) {
        let (lang, templates) = self.select(accept_language);
        (lang, templates.render(values))
    }

    fn default_entry(&self) -> (&str, &Templates) {
        match self.sets.get_key_value(&self.default) {
            Some((lang, templates)) => (lang, templates),
            None => (&self.default, &FALLBACK),
        }
    }

    fn lookup(&self, header: &str) -> Option<(&str, &Templates)> {
        if header.len() > MAX_ACCEPT_LANGUAGE_LEN {
            return None;
        }
        let mut wanted: Vec<(u16, String)> = Vec::new();
        let mut refused: Vec<String> = Vec::new();
        for element in header
            .split(',')
            .map(trim_ows)
            .filter(|e| !e.is_empty())
            .take(MAX_LANGUAGE_RANGES)
        {
            match parse_element(element) {
                Some((range, 0)) => refused.push(range),
                Some((range, q)) => wanted.push((q, range)),
                None => {}
            }
        }
        // Stable: equal weights keep the header's order.
        wanted.sort_by_key(|w| std::cmp::Reverse(w.0));
        let acceptable = |tag: &str| !refused.iter().any(|r| r == tag);
        for (_, range) in &wanted {
            if range == "*" {
                if acceptable(&self.default) {
                    return Some(self.default_entry());
                }
                continue;
            }
            for tag in lookup_candidates(range) {
                if !acceptable(tag) {
                    continue;
                }
                if let Some((lang, templates)) = self.sets.get_key_value(tag) {
                    return Some((lang, templates));
                }
            }
        }
        None
    }
}

fn normalize_tag(tag: &str) -> String {
    tag.trim().to_ascii_lowercase()
}

fn trim_ows(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

/// `range`, then `range` truncated subtag by subtag (RFC 4647, section 3.4).
fn lookup_candidates(range: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(range), |tag| {
        let (mut head, _) = tag.rsplit_once('-')?;
        // A singleton (`x`, `u`, …) is meaningless without the subtag after it.
        if let Some((shorter, last)) = head.rsplit_once('-')
            && last.len() == 1
        {
            head = shorter;
        }
        Some(head)
    })
}

/// One element of an `Accept-Language` list: the lowercased range and its weight in
/// thousandths, or `None` when the element is malformed.
fn parse_element(element: &str) -> Option<(String, u16)> {
    let mut parts = element.split(';');
    let range = trim_ows(parts.next()?);
    if !is_language_range(range) {
        return None;
    }
    let mut weight = None;
    for param in parts.map(trim_ows) {
        let Some((name, value)) = param.split_once('=') else {
            continue;
        };
        if name.eq_ignore_ascii_case("q") {
            if weight.is_some() {
                return None;
            }
            weight = Some(parse_qvalue(value)?);
        }
    }
    Some((range.to_ascii_lowercase(), weight.unwrap_or(1000)))
}

/// `*`, or `1*8ALPHA *("-" 1*8alphanum)` (RFC 4647, section 2.1).
fn is_language_range(range: &str) -> bool {
    range == "*"
        || range.split('-').enumerate().all(|(i, subtag)| {
            (1..=8).contains(&subtag.len())
                && subtag.bytes().all(|b| {
                    if i == 0 {
                        b.is_ascii_alphabetic()
                    } else {
                        b.is_ascii_alphanumeric()
                    }
                })
        })
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )` (RFC 9110, section
/// 12.4.2), in thousandths.
fn parse_qvalue(s: &str) -> Option<u16> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0u16, |n, b| n * 10 + u16::from(b - b'0'));
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn values<'a>(app: &'a str, email: &'a str) -> TemplateValues<'a> {
        TemplateValues {
            code: "012345",
            minutes: 5,
            app_name: app,
            email,
            link: None,
        }
    }

    const LINK: &str = "https://app.example.com/auth/magic?token=AbC-_123";

    fn snippets(text_link: &str, html_link: &str) -> Templates {
        Templates {
            subject: "{code}".into(),
            text: "T[{link_block}]".into(),
            html: "H[{link_block}]".into(),
            text_link: text_link.into(),
            html_link: html_link.into(),
            ..Templates::default()
        }
    }

    #[test]
    fn default_templates_carry_code_and_lifetime() {
        let r = Templates::default().render(&values("Acme", "a@example.com"));
        assert!(r.subject.contains("012345"));
        for part in [&r.text, &r.html] {
            assert!(part.contains("012345"));
            assert!(part.contains("5 minutes"));
            assert!(part.contains("Acme"));
            assert!(part.contains("a@example.com"));
        }
    }

    #[test]
    fn html_values_are_escaped_and_not_reexpanded() {
        let t = Templates {
            subject: "{app_name}\r\nBcc: x".into(),
            text: "{app_name} {code}".into(),
            html: "<b>{app_name}</b> {email} {unknown} {".into(),
            text_link: String::new(),
            html_link: String::new(),
            ..Templates::default()
        };
        let r = t.render(&values("<script>{code}</script>", "o'neil@example.com"));
        assert_eq!(
            r.html,
            "<b>&lt;script&gt;{code}&lt;/script&gt;</b> o&#39;neil@example.com {unknown} {"
        );
        assert_eq!(r.text, "<script>{code}</script> 012345");
        assert!(!r.subject.contains('\n') && !r.subject.contains('\r'));
    }

    #[test]
    fn the_email_change_code_mail_says_what_the_code_does() {
        for (lang, t) in MailTemplates::builtin().sets {
            let r = t.render_email_change(&TemplateValues {
                link: Some(LINK),
                ..values("Acme", "new@example.com")
            });
            for part in [&r.subject, &r.text, &r.html] {
                assert!(part.contains("012345"), "{lang}: {part}");
                assert!(!part.contains('{'), "{lang}: placeholder left in {part}");
                assert!(!part.contains("token="), "{lang}: a link in {part}");
            }
            for part in [&r.text, &r.html] {
                assert!(part.contains("new@example.com"), "{lang}: {part}");
                assert!(part.contains("5 Minuten") || part.contains("5 minutes"));
            }
            assert_ne!(
                r.subject,
                t.render(&values("Acme", "new@example.com")).subject
            );
        }
    }

    #[test]
    fn the_email_change_notice_names_both_addresses_and_carries_no_code() {
        let v = NoticeValues {
            app_name: "Acme <Corp>",
            email: "old@example.com",
            new_email: "n\u{2022}\u{2022}\u{2022}@example.org",
        };
        for (lang, t) in MailTemplates::builtin().sets {
            let r = t.render_email_changed(&v);
            for part in [&r.subject, &r.text, &r.html] {
                assert!(!part.contains('{'), "{lang}: placeholder left in {part}");
                assert!(part.contains("Acme"), "{lang}: {part}");
            }
            for part in [&r.text, &r.html] {
                assert!(part.contains("old@example.com"), "{lang}: {part}");
                assert!(part.contains(v.new_email), "{lang}: {part}");
            }
            assert!(r.html.contains("Acme &lt;Corp&gt;"), "{lang}: unescaped");
            assert!(!r.html.contains("<Corp>"), "{lang}: unescaped");
        }
        let custom = Templates {
            email_changed_subject: "{app_name}\r\n{code}".into(),
            email_changed_text: "{email} -> {new_email} {code}".into(),
            ..Templates::default()
        };
        let r = custom.render_email_changed(&v);
        assert_eq!(r.subject, "Acme <Corp>  {code}");
        assert_eq!(
            r.text,
            format!("old@example.com -> {} {{code}}", v.new_email)
        );
    }

    #[test]
    fn link_block_is_rendered_only_with_a_link() {
        let t = snippets("<{link} {code} {link_block}>", "<{link} {app_name}>");
        let without = t.render(&values("A&B", "a@example.com"));
        assert_eq!(without.text, "T[]");
        assert_eq!(without.html, "H[]");
        let with = t.render(&TemplateValues {
            link: Some(LINK),
            ..values("A&B", "a@example.com")
        });
        // `{link_block}` inside a snippet renders as nothing.
        assert_eq!(with.text, format!("T[<{LINK} 012345 >]"));
        assert_eq!(with.html, format!("H[<{LINK} A&amp;B>]"));
    }

    #[test]
    fn default_templates_offer_the_link_below_the_code() {
        for (lang, t) in MailTemplates::builtin().sets {
            let without = t.render(&values("Acme", "a@example.com"));
            for part in [&without.text, &without.html] {
                assert!(!part.contains('{'), "{lang}: placeholder left in {part}");
                assert!(!part.contains("https://"), "{lang}: {part}");
            }
            assert!(!without.html.contains("<a "), "{lang}");
            let with = t.render(&TemplateValues {
                link: Some(LINK),
                ..values("Acme", "a@example.com")
            });
            assert!(!with.subject.contains(LINK), "{lang}");
            for part in [&with.text, &with.html] {
                assert!(!part.contains('{'), "{lang}: placeholder left in {part}");
                let code_at = part.find("012345");
                let link_at = part.find(LINK);
                assert!(code_at.is_some() && code_at < link_at, "{lang}: {part}");
            }
            assert!(with.text.contains(&format!("\n\n    {LINK}\n\n")), "{lang}");
            assert!(with.html.contains(&format!("<a href=\"{LINK}\"")), "{lang}");
            // The text without a link is the text with a link minus the link paragraph.
            assert!(with.text.len() > without.text.len());
            assert!(!without.text.contains("\n\n\n"), "{lang}: {}", without.text);
        }
    }

    #[test]
    fn link_is_html_escaped_in_html_only() {
        let evil = "https://x.example/?a=\"><script>{code}</script>&b='";
        let t = snippets("{link}", "<a href=\"{link}\">{link}</a>");
        let r = t.render(&TemplateValues {
            link: Some(evil),
            ..values("Acme", "a@example.com")
        });
        let escaped = "https://x.example/?a=&quot;&gt;&lt;script&gt;{code}&lt;/script&gt;\
                       &amp;b=&#39;";
        assert_eq!(r.html, format!("H[<a href=\"{escaped}\">{escaped}</a>]"));
        assert_eq!(r.text, format!("T[{evil}]"));
        let r = Templates::default().render(&TemplateValues {
            link: Some(evil),
            ..values("Acme", "a@example.com")
        });
        assert!(!r.html.contains("<script>") && !r.html.contains(evil));
        assert!(r.html.contains(escaped));
    }

    #[test]
    fn german_set_renders_every_value() {
        let templates = MailTemplates::builtin();
        let de = templates.get("de").cloned().unwrap_or_default();
        assert_ne!(de, Templates::default());
        let r = de.render(&TemplateValues {
            link: Some(LINK),
            ..values("Acme", "ada@example.com")
        });
        assert_eq!(r.subject, "Ihr Anmeldecode für Acme: 012345");
        for part in [&r.text, &r.html] {
            for expected in ["012345", "5 Minuten", "Acme", "ada@example.com", LINK] {
                assert!(part.contains(expected), "{expected} missing in {part}");
            }
            assert!(part.contains("Sie") && !part.contains('{'));
        }
        assert!(r.html.contains("lang=\"de\""));
    }

    fn pick(header: Option<&str>) -> String {
        let t = MailTemplates::builtin().with_language("pt-BR", Templates::default());
        t.select(header).0.to_owned()
    }

    #[test]
    fn select_prefers_the_highest_weight() {
        assert_eq!(pick(Some("de-CH,de;q=0.9,en;q=0.8")), "de");
        assert_eq!(pick(Some("fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7")), "en");
        assert_eq!(pick(Some("en;q=0.5, de")), "de");
        assert_eq!(pick(Some("en;q=0.499,de;Q=0.5")), "de");
        assert_eq!(pick(Some("en;q=1.000 , de ;q=0.999")), "en");
    }

    #[test]
    fn select_keeps_header_order_on_equal_weights() {
        assert_eq!(pick(Some("de;q=0.5, en;q=0.5")), "de");
        assert_eq!(pick(Some("en;q=0.5, de;q=0.50")), "en");
        assert_eq!(pick(Some("fr, de, en")), "de");
    }

    #[test]
    fn select_never_picks_a_refused_language() {
        assert_eq!(pick(Some("en;q=0, de;q=0.1")), "de");
        let de_default = MailTemplates::builtin().with_default_language("de");
        let de_default = de_default.unwrap_or_default();
        assert_eq!(de_default.select(Some("de;q=0, en;q=0.001")).0, "en");
        assert_eq!(de_default.select(Some("*, en;q=0.1, de;q=0.0")).0, "en");
        // Truncating `de-CH` does not bring back the refused `de`.
        assert_eq!(de_default.select(Some("de-CH, de;q=0, en;q=0.1")).0, "en");
    }

    #[test]
    fn select_falls_back_to_the_default() {
        assert_eq!(pick(Some("de;q=0")), "en");
        assert_eq!(pick(Some("*")), "en");
        assert_eq!(pick(Some("fr, *;q=0.5, de;q=0.4")), "en");
        assert_eq!(pick(Some("*;q=0, de;q=0.2")), "de");
        for garbage in [
            "",
            " , ,, ",
            "???",
            "de_DE",
            "d3",
            "de;q=",
            "de;q=2",
            "de;q=1.5",
            "de;q=0.1234",
            "de;q=abc",
            "de;q=0.5;q=0.5",
            "toolongtag",
            "de-",
            "-de",
            "de--ch",
            "\u{e9}",
        ] {
            assert_eq!(pick(Some(garbage)), "en", "{garbage:?}");
        }
        assert_eq!(pick(None), "en");
        let de_default = MailTemplates::builtin().with_default_language("de");
        assert_eq!(de_default.unwrap_or_default().select(None).0, "de");
    }

    #[test]
    fn select_ignores_case_and_truncates() {
        assert_eq!(pick(Some("DE-de")), "de");
        assert_eq!(pick(Some("de-CH-1996")), "de");
        assert_eq!(pick(Some("en-x-private")), "en");
        assert_eq!(pick(Some("de;level=1;q=0.9")), "de");
        assert_eq!(pick(Some("\tde\t")), "de");
    }

    #[test]
    fn select_truncates_the_range_but_never_extends_it() {
        assert_eq!(pick(Some("pt-BR")), "pt-br");
        assert_eq!(pick(Some("PT-br-x-foo, de")), "pt-br");
        assert_eq!(pick(Some("pt, de;q=0.5")), "de");
        assert_eq!(pick(Some("pt")), "en");
    }

    #[test]
    fn select_bounds_the_work_on_hostile_headers() {
        let started = Instant::now();
        let huge = "zz-aaaaaaaa-bbbbbbbb;q=0.5, ".repeat(100 * 1024 / 28) + "de";
        assert!(huge.len() > 100 * 1000);
        assert_eq!(pick(Some(&huge)), "en");
        let commas = ",".repeat(100 * 1024);
        assert_eq!(pick(Some(&commas)), "en");
        assert!(started.elapsed() < Duration::from_secs(1));
        // Only the first 32 elements count, even in a short header.
        let many = "x,".repeat(32) + "de";
        assert!(many.len() <= MAX_ACCEPT_LANGUAGE_LEN);
        assert_eq!(pick(Some(&many)), "en");
        let enough = "x,".repeat(31) + "de";
        assert_eq!(pick(Some(&enough)), "de");
        // A header over 1 KiB is ignored as a whole.
        let long = format!("de,{}", "x".repeat(MAX_ACCEPT_LANGUAGE_LEN));
        assert_eq!(pick(Some(&long)), "en");
    }

    #[test]
    fn languages_are_added_replaced_and_listed() {
        let custom = Templates {
            subject: "Code {code}".into(),
            ..Templates::default()
        };
        let t = MailTemplates::builtin()
            .with_language("FR", custom.clone())
            .with_language("De", custom.clone());
        assert_eq!(t.languages().collect::<Vec<_>>(), ["de", "en", "fr"]);
        assert_eq!(t.get("fr"), Some(&custom));
        assert_eq!(t.get("DE"), Some(&custom));
        assert_eq!(t.get("de-ch"), None);
        assert_eq!(t.default_language(), "en");
        assert_eq!(t.get("en"), Some(&Templates::default()));
        assert_eq!(MailTemplates::default(), MailTemplates::builtin());
        let (lang, r) = t.render(Some("fr-CA"), &values("Acme", "a@example.com"));
        assert_eq!((lang, r.subject.as_str()), ("fr", "Code 012345"));
    }

    #[test]
    fn default_language_must_have_a_set() {
        let err = MailTemplates::builtin().with_default_language("xx");
        match err {
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains("OTP_AUTH_MAIL_DEFAULT_LANGUAGE"), "{msg}");
                assert!(msg.contains("\"xx\"") && msg.contains("de, en"), "{msg}");
            }
            other => panic!("expected a configuration error, got {other:?}"),
        }
        assert!(MailTemplates::builtin().with_default_language("").is_err());
        let t = MailTemplates::builtin().with_default_language("DE-ch");
        assert_eq!(
            t.map(|t| t.default_language().to_owned()).ok(),
            Some("de".into())
        );
        let t = MailTemplates::new(Templates::default()).with_default_language("de");
        assert!(t.is_err());
    }
}
