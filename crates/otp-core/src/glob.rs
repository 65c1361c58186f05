//! Minimal glob matching (`*` any run, `?` one character) for address allow-lists.

/// Whether `text` matches `pattern`, where `*` matches any run of characters and `?`
/// exactly one. Linear in practice: backtracks only to the last `*`.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Whether an address pattern admits addresses of any domain (or of a whole top-level
/// domain): `*`, `*@*`, `?*@*.com`, `*@example.*`. A narrow pattern ends in a literal
/// domain of at least two labels (`*@example.com`, `*@*.test.example.com`,
/// `qa+*@example.com`) or names one whole literal domain (`dev@localhost`).
pub(crate) fn admits_every_domain(pattern: &str) -> bool {
    let pattern = pattern.trim().to_ascii_lowercase();
    // The literal text after the last wildcard.
    let tail = match pattern.rfind(['*', '?']) {
        Some(i) => &pattern[i + 1..],
        None => return false, // one literal address
    };
    if tail.contains('@') {
        return false; // the whole domain is literal
    }
    // Two non-empty labels at the end: `example.com` of `.example.com`.
    let labels: Vec<&str> = tail.split('.').collect();
    let whole = labels.iter().rev().take_while(|l| !l.is_empty()).count();
    // Only labels fully inside the tail count: the first may be the end of a wildcard run.
    let complete = if tail.starts_with('.') || labels.len() > whole {
        whole
    } else {
        whole.saturating_sub(1)
    };
    complete < 2
}

#[cfg(test)]
mod tests {
    use super::{admits_every_domain, glob_match};

    #[test]
    fn broad_patterns_are_told_from_narrow_ones() {
        for broad in [
            "*",
            "**",
            "*@*",
            "?*@*",
            "*@*.com",
            "*@example.*",
            "*com",
            "*.com",
            "*@*m",
            "*example.com",
            "*@*example.com",
        ] {
            assert!(admits_every_domain(broad), "{broad}");
        }
        for narrow in [
            "dev@localhost",
            "*@example.com",
            "*@*.example.com",
            "qa+*@example.com",
            "schemathesis-*@example.com",
            "*@magic.bench",
            "*@test.example.co.uk",
        ] {
            assert!(!admits_every_domain(narrow), "{narrow}");
        }
    }

    #[test]
    fn matches() {
        assert!(glob_match("*@test.example.com", "a@test.example.com"));
        assert!(!glob_match("*@test.example.com", "a@example.com"));
        assert!(!glob_match(
            "*@test.example.com",
            "a@test.example.com.evil.org"
        ));
        assert!(glob_match("qa+*@example.com", "qa+1@example.com"));
        assert!(!glob_match("qa+*@example.com", "qa@example.com"));
        assert!(glob_match("user?@example.com", "user1@example.com"));
        assert!(glob_match("dev@example.com", "dev@example.com"));
        assert!(!glob_match("dev@example.com", "xdev@example.com"));
        assert!(glob_match("*", "anything@example.com"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
    }
}
