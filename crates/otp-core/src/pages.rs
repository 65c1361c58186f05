//! The HTML pages of the contract: the confirmation page of a sign-in link
//! (`GET <mount>/magic`) with its Content-Security-Policy.

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

use crate::mailer::template::{escape_html, replace_placeholders};

/// The confirmation page template. Its `<script>` and `<style>` are static: the values go
/// only into the markup, so the CSP hashes below are fixed.
const PAGE_TEMPLATE: &str = include_str!("magic.html");

/// The page shown by `GET <mount>/magic?token=…`.
///
/// Loading it changes nothing (link scanners may fetch it freely). Its button posts
/// `{"token": …}` to the relative URL `verify-link` (that is, `<mount>/verify-link`) with
/// same-origin credentials; on 200 it says "You are signed in." and moves on to `/`; on an
/// error it shows the problem's `detail` as text (for 400 with a hint to request a new
/// code); on a network failure it offers a retry. The token sits HTML-escaped in a
/// `data-token` attribute and the application name is escaped too; neither enters the
/// script. Serve it with [`confirmation_page_csp`] as `Content-Security-Policy`.
///
/// `elsewhere`: the link belongs to a login flow this browser does not hold and
/// `OTP_AUTH_FLOW_BINDING=required`: the page says to open it where the code was asked
/// for, and offers nothing that spends it.
pub(crate) fn confirmation_page(
    token: &str,
    app_name: &str,
    account: Option<&str>,
    elsewhere: bool,
) -> String {
    let actions = if elsewhere && account.is_some() {
        "<p id=\"elsewhere\">Open this link in the browser where you asked for the code: \
         it signs in only there.</p>"
    } else {
        "<p>Press the button to finish signing in. The link works once.</p>\n  \
         <button type=\"button\" id=\"confirm\">Sign in</button>"
    };
    let token = escape_html(token);
    let app_name = escape_html(app_name);
    // Naming the account lets a user notice a link someone requested for their own.
    let account = match account {
        Some(a) => format!(
            "This link signs in as <strong>{}</strong>. If that is not your address, close \
             this page.",
            escape_html(a)
        ),
        None => "This link is invalid or has expired: request a new code.".to_owned(),
    };
    replace_placeholders(
        PAGE_TEMPLATE,
        &[
            ("{{token}}", &token),
            ("{{app_name}}", &app_name),
            ("{{account}}", &account),
            ("{{actions}}", actions),
        ],
    )
}

/// The text between the first `open` and the following `close`, or "" when absent.
fn inline_block<'a>(page: &'a str, open: &str, close: &str) -> &'a str {
    page.split_once(open)
        .and_then(|(_, after)| after.split_once(close))
        .map_or("", |(inner, _)| inner)
}

/// `'sha256-…'` of an inline block, as CSP hash sources are written.
fn csp_hash(content: &str) -> String {
    format!(
        "'sha256-{}'",
        STANDARD.encode(Sha256::digest(content.as_bytes()))
    )
}

static CONFIRMATION_PAGE_CSP: LazyLock<String> = LazyLock::new(|| {
    let script = csp_hash(inline_block(PAGE_TEMPLATE, "<script>", "</script>"));
    let style = csp_hash(inline_block(PAGE_TEMPLATE, "<style>", "</style>"));
    format!(
        "default-src 'none'; script-src {script}; style-src {style}; connect-src 'self'; \
         img-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
});

/// The `Content-Security-Policy` of [`confirmation_page`]: nothing but the page's own
/// inline script and style (allowed by their SHA-256 hashes) and requests to its own
/// origin; no framing, no forms, no base URL changes.
pub(crate) fn confirmation_page_csp() -> &'static str {
    &CONFIRMATION_PAGE_CSP
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(page: &str) -> &str {
        inline_block(page, "<script>", "</script>")
    }

    fn style(page: &str) -> &str {
        inline_block(page, "<style>", "</style>")
    }

    #[test]
    fn page_carries_the_token_in_data_token_only() {
        let token = "AbCdEf0123-_xyz";
        let page = confirmation_page(
            token,
            "Example App",
            Some("a\u{2022}\u{2022}\u{2022}@example.com"),
            false,
        );
        assert!(page.contains(&format!("data-token=\"{token}\"")));
        assert_eq!(page.matches(token).count(), 1);
        // The script and style are the same whatever the token.
        let other = confirmation_page("another-token", "Other", None, false);
        assert!(!script(&page).is_empty());
        assert_eq!(script(&page), script(&other));
        assert_eq!(style(&page), style(&other));
        assert!(!script(&page).contains(token));
        assert_eq!(page.matches("<script").count(), 1);
        assert!(page.contains("<button type=\"button\""));
        assert!(page.contains("fetch(\"verify-link\""));
        assert!(page.contains("credentials: \"same-origin\""));
        assert!(page.contains("<html lang=\"en\">"));
        assert!(page.contains("<meta name=\"viewport\""));
        assert!(page.contains("<meta name=\"referrer\" content=\"no-referrer\">"));
        assert!(page.contains("<meta name=\"robots\" content=\"noindex"));
        assert!(page.contains("Example App"));
        assert!(
            page.contains("signs in as <strong>a\u{2022}\u{2022}\u{2022}@example.com</strong>")
        );
        assert!(other.contains("invalid or has expired"));
        // Self-contained: nothing loaded from elsewhere, no innerHTML.
        assert!(!page.contains("http://") && !page.contains("https://"));
        assert!(!page.contains("innerHTML"));
        assert!(!page.contains("{{"));
    }

    #[test]
    fn page_escapes_token_and_app_name() {
        let page = confirmation_page(
            "t\"><script>alert('x')</script>&",
            "A \"<b>&'C",
            Some("<i>x</i>"),
            false,
        );
        assert!(page.contains(
            "data-token=\"t&quot;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;\""
        ));
        assert!(page.contains("Sign in to A &quot;&lt;b&gt;&amp;&#39;C"));
        assert!(!page.contains("alert('x')"));
        assert!(!page.contains("<b>"));
        assert!(page.contains("&lt;i&gt;x&lt;/i&gt;") && !page.contains("<i>"));
        assert_eq!(page.matches("<script>").count(), 1);
        // Values that look like placeholders are not expanded again.
        let page = confirmation_page("{{app_name}}", "{{token}}", Some("{{token}}"), false);
        assert!(page.contains("data-token=\"{{app_name}}\""));
        assert!(page.contains("<title>Sign in to {{token}}</title>"));
    }

    #[test]
    fn csp_hashes_match_the_rendered_page() {
        let page = confirmation_page("some-token", "Example <App>", None, false);
        let script = script(&page);
        let style = style(&page);
        assert!(script.contains("verify-link"));
        assert!(style.contains("button"));
        let hash = |s: &str| STANDARD.encode(Sha256::digest(s.as_bytes()));
        let expected = format!(
            "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}'; \
             connect-src 'self'; img-src 'none'; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'",
            hash(script),
            hash(style)
        );
        assert_eq!(confirmation_page_csp(), expected);
        // No inline style attributes or handlers, which the hashes would not allow.
        assert!(!page.contains(" style=\""));
        assert!(!page.contains(" onclick="));
    }
}
