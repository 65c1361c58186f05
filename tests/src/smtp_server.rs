//! A small SMTP server for tests: speaks enough ESMTP for lettre, records what it
//! receives, counts connections, and can be told to refuse (4xx, 5xx) or to hang.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Accepts every message.
    Accept,
    /// Refuses recipients with `550 5.1.1 <address>: … User unknown`.
    Reject,
    /// Refuses recipients with `451 4.3.0` (try again later).
    TempFail,
    /// Accepts connections and never says a word.
    Hang,
    /// Accepts one message per connection, then closes it without a word (as a server
    /// that drops idle clients does).
    OneMailPerConnection,
}

/// One received message.
#[derive(Debug, Clone)]
pub struct Received {
    /// `MAIL FROM` path.
    pub from: String,
    /// `RCPT TO` paths.
    pub to: Vec<String>,
    /// The raw message (DATA, dot-unstuffed).
    pub data: Vec<u8>,
    /// The `AUTH` line, if the client authenticated.
    pub auth: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    received: Mutex<Vec<Received>>,
    connections: AtomicUsize,
    behaviour: Mutex<Option<Behaviour>>,
    /// A behaviour for the next recipient only.
    next: Mutex<Option<Behaviour>>,
}

/// The running server; stops when dropped.
#[derive(Debug)]
pub struct SmtpServer {
    pub port: u16,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SmtpServer {
    /// Starts a server on a free loopback port.
    pub async fn start(behaviour: Behaviour) -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State::default());
        *state.behaviour.lock().unwrap() = Some(behaviour);
        let s = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                s.connections.fetch_add(1, Ordering::SeqCst);
                let s = s.clone();
                tokio::spawn(async move {
                    let _ = session(stream, &s).await;
                });
            }
        });
        SmtpServer { port, state, task }
    }

    /// Changes how later commands are answered.
    pub fn set_behaviour(&self, b: Behaviour) {
        *self.state.behaviour.lock().unwrap() = Some(b);
    }

    /// Answers the next recipient as `b`, then goes back to the set behaviour.
    pub fn fail_next(&self, b: Behaviour) {
        *self.state.next.lock().unwrap() = Some(b);
    }

    /// Every message received so far.
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Subject, plain text and HTML of the last message to `to` (any spelling), decoded.
    pub fn last_mail(&self, to: &str) -> Option<(String, String, String)> {
        let to = otp_core::hooks::Email::parse(to).ok()?;
        let to = to.as_str();
        let msgs = self.received();
        let m = msgs.iter().rev().find(|m| m.to.iter().any(|t| t == to))?;
        let parsed = mail_parser::MessageParser::default().parse(&m.data)?;
        Some((
            parsed.subject().unwrap_or_default().to_owned(),
            parsed.body_text(0)?.into_owned(),
            parsed
                .body_html(0)
                .map(|h| h.into_owned())
                .unwrap_or_default(),
        ))
    }

    /// The code in the plain-text part of the last message to `to` (any spelling).
    pub fn last_code(&self, to: &str) -> Option<String> {
        let to = otp_core::hooks::Email::parse(to).ok()?;
        let to = to.as_str();
        let msgs = self.received();
        let m = msgs.iter().rev().find(|m| m.to.iter().any(|t| t == to))?;
        let parsed = mail_parser::MessageParser::default().parse(&m.data)?;
        let text = parsed.body_text(0)?;
        text.split_whitespace()
            .find(|w| w.len() >= 6 && w.bytes().all(|b| b.is_ascii_digit()))
            .map(str::to_owned)
    }
}

fn behaviour(s: &State) -> Behaviour {
    s.behaviour.lock().unwrap().unwrap_or(Behaviour::Accept)
}

async fn session(stream: TcpStream, s: &State) -> std::io::Result<()> {
    if behaviour(s) == Behaviour::Hang {
        // Keep the socket open and silent until the client gives up.
        let _keep = stream;
        tokio::time::sleep(Duration::from_secs(600)).await;
        return Ok(());
    }
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    w.write_all(b"220 test.local ESMTP ready\r\n").await?;
    let (mut from, mut to, mut auth) = (String::new(), Vec::new(), None);
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_owned();
        let upper = cmd.to_ascii_uppercase();
        // Real servers quote the recipient they refuse.
        let refusal: String;
        let reply: &[u8] = if upper.starts_with("EHLO") {
            b"250-test.local\r\n250-8BITMIME\r\n250-AUTH PLAIN LOGIN\r\n250 SMTPUTF8\r\n"
        } else if upper.starts_with("HELO") || upper == "NOOP" {
            b"250 ok\r\n"
        } else if upper.starts_with("AUTH") {
            auth = Some(cmd.clone());
            b"235 2.7.0 authenticated\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            from = cmd[10..].trim().trim_matches(['<', '>']).to_owned();
            to.clear();
            b"250 ok\r\n"
        } else if upper.starts_with("RCPT TO:") {
            let once = s.next.lock().unwrap().take();
            match once.unwrap_or_else(|| behaviour(s)) {
                Behaviour::Reject => {
                    refusal = format!(
                        "550 5.1.1 <{}>: Recipient address rejected: User unknown\r\n",
                        cmd[8..].trim().trim_matches(['<', '>'])
                    );
                    refusal.as_bytes()
                }
                Behaviour::TempFail => b"451 4.3.0 try again later\r\n",
                _ => {
                    to.push(cmd[8..].trim().trim_matches(['<', '>']).to_owned());
                    b"250 ok\r\n"
                }
            }
        } else if upper == "DATA" {
            w.write_all(b"354 end with .\r\n").await?;
            let mut data = Vec::new();
            loop {
                let mut l = String::new();
                if r.read_line(&mut l).await? == 0 {
                    return Ok(());
                }
                if l == ".\r\n" {
                    break;
                }
                let l = l.strip_prefix('.').unwrap_or(&l);
                data.extend_from_slice(l.as_bytes());
            }
            s.received.lock().unwrap().push(Received {
                from: from.clone(),
                to: to.clone(),
                data,
                auth: auth.clone(),
            });
            if behaviour(s) == Behaviour::OneMailPerConnection {
                w.write_all(b"250 2.0.0 queued\r\n").await?;
                return Ok(());
            }
            b"250 2.0.0 queued\r\n"
        } else if upper == "RSET" {
            from.clear();
            to.clear();
            b"250 ok\r\n"
        } else if upper == "QUIT" {
            w.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            b"502 5.5.2 command not recognized\r\n"
        };
        w.write_all(reply).await?;
    }
}
