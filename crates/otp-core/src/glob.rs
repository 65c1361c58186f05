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

#[cfg(test)]
mod tests {
    use super::glob_match;

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
