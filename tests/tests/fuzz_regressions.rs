//! The fuzz targets' properties (`tests/fuzz/checks.rs`) on every saved input of
//! `tests/fuzz/regressions/<target>` and on mutations of each (bytes flipped, inserted,
//! removed, halves swapped), in the ordinary test build. Coverage-guided fuzzing of the
//! same properties: `cargo xtask fuzz [seconds]`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../fuzz/checks.rs"]
mod checks;

use std::path::Path;

/// Mutations of each saved input.
const MUTATIONS: usize = 300;

/// A small deterministic generator (xorshift64*), so a failing mutation is found again.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(input: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(5) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(v.len() + 1);
                let byte =
                    [b'\n', b'\r', b'"', b'{', b'.', b'=', 0, 0xff, b'@', b'9'][rng.below(10)];
                v.insert(i, byte);
            }
            2 if !v.is_empty() => {
                v.remove(rng.below(v.len()));
            }
            3 => {
                let mid = rng.below(v.len() + 1);
                v.rotate_left(mid);
            }
            _ => {
                let i = rng.below(v.len() + 1);
                v.insert(i, rng.next() as u8);
            }
        }
    }
    v
}

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "no saved inputs in {}", dir.display());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut runs = 0;
    for input in &inputs {
        check(input);
        for _ in 0..MUTATIONS {
            check(&mutate(input, &mut rng));
            runs += 1;
        }
    }
    eprintln!("{target}: {} saved inputs, {runs} mutations", inputs.len());
}

#[test]
fn email_inputs() {
    replay("email", checks::email);
}

#[test]
fn code_inputs() {
    replay("code", checks::code);
}

#[test]
fn jwt_inputs() {
    replay("jwt", checks::jwt);
}

#[test]
fn request_inputs() {
    replay("request", checks::request);
}
