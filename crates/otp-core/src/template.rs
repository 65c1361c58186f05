//! The login mail's templates: subject, plain text and HTML, with placeholders.
//!
//! Placeholders: `{code}`, `{minutes}`, `{app_name}`, `{email}`. In the HTML template each
//! value is HTML-escaped; the subject and text get the values as they are (the code is
//! digits, the address validated, the application name free of control characters).

/// The three templates of the login mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Templates {
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body.
    pub html: String,
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

impl Default for Templates {
    fn default() -> Self {
        Templates {
            subject: "Your {app_name} login code: {code}".to_owned(),
            text: "Your login code for {app_name} is:\n\n    {code}\n\n\
                   It expires in {minutes} minutes and can be used once.\n\n\
                   If you did not ask to sign in as {email}, ignore this mail: \
                   nobody can sign in without the code.\n"
                .to_owned(),
            html: "<!doctype html>\n<html><body style=\"font-family: sans-serif; color: #222;\">\n\
                   <p>Your login code for {app_name} is:</p>\n\
                   <p style=\"font-size: 28px; font-weight: bold; letter-spacing: 4px;\">{code}</p>\n\
                   <p>It expires in {minutes} minutes and can be used once.</p>\n\
                   <p style=\"color: #666; font-size: 13px;\">If you did not ask to sign in as {email}, \
                   ignore this mail: nobody can sign in without the code.</p>\n\
                   </body></html>\n"
                .to_owned(),
        }
    }
}

impl Templates {
    /// Renders all three templates.
    pub fn render(&self, v: &TemplateValues<'_>) -> Rendered {
        let minutes = v.minutes.to_string();
        let plain = |t: &str| substitute(t, v.code, &minutes, v.app_name, v.email);
        Rendered {
            // A subject is one header line: no line breaks whatever the template says.
            subject: plain(&self.subject).replace(['\r', '\n'], " "),
            text: plain(&self.text),
            html: substitute(
                &self.html,
                &escape_html(v.code),
                &minutes,
                &escape_html(v.app_name),
                &escape_html(v.email),
            ),
        }
    }
}

// One pass over the template, so a value that itself contains `{code}` is not expanded again.
fn substitute(t: &str, code: &str, minutes: &str, app: &str, email: &str) -> String {
    let mut out = String::with_capacity(t.len() + 64);
    let mut rest = t;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let (value, len) = [
            ("{code}", code),
            ("{minutes}", minutes),
            ("{app_name}", app),
            ("{email}", email),
        ]
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
pub fn escape_html(s: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn values<'a>(app: &'a str, email: &'a str) -> TemplateValues<'a> {
        TemplateValues {
            code: "012345",
            minutes: 5,
            app_name: app,
            email,
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
        };
        let r = t.render(&values("<script>{code}</script>", "o'neil@example.com"));
        assert_eq!(
            r.html,
            "<b>&lt;script&gt;{code}&lt;/script&gt;</b> o&#39;neil@example.com {unknown} {"
        );
        assert_eq!(r.text, "<script>{code}</script> 012345");
        assert!(!r.subject.contains('\n') && !r.subject.contains('\r'));
    }
}
