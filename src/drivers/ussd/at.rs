//! The AT dialogue of one USSD poll over any `AsyncRead + AsyncWrite` (the serial port in
//! production, a pseudo-terminal or an in-memory pipe in tests): `ATE0`/`AT` init, the
//! `+CSCS?` query (read, never changed), `AT+CUSD=1,"<code>",15`, collecting `+CUSD:` replies,
//! and `AT+CUSD=2` to cancel. Knows lines and result codes; decoding and parsing live elsewhere.

use std::fmt;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::codec::{self, Charset};

/// Bytes kept while waiting for a line end; past this, a line is garbage and is dropped.
const MAX_LINE: usize = 16 * 1024;
/// How long an init command (`ATE0`, `AT`, `AT+CSCS?`) may take.
const INIT_WAIT: Duration = Duration::from_secs(5);
/// How long `AT+CUSD=2` may take.
const CANCEL_WAIT: Duration = Duration::from_millis(1500);
/// After the reply, how long to wait for the `OK` of a modem that answered first.
const SETTLE_WAIT: Duration = Duration::from_millis(300);

/// One `+CUSD: <m>[,<str>[,<dcs>]]` line, `<str>` still encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cusd {
    pub m: u8,
    pub text: Option<String>,
    pub dcs: Option<u8>,
}

/// Why a dialogue step failed.
#[derive(Debug)]
pub enum AtError {
    Io(std::io::Error),
    /// The port reached end of file (a pty whose other side went away, a modem unplugged).
    Closed,
    /// No answer before the deadline; `waiting_for` names what was expected.
    Timeout {
        waiting_for: String,
    },
    /// `ERROR`, `+CME ERROR: n` or similar to `command`.
    Rejected {
        command: String,
        response: String,
    },
    /// `+CUSD: 2` without text: the network ended the session with nothing to show.
    Terminated,
    /// `+CUSD: 3`: another local client answered.
    OtherClient,
    /// `+CUSD: 4`: the operation is not supported (SIMCom also says this on errors).
    NotSupported,
    /// `+CUSD: 5`: the network timed out.
    NetworkTimeout,
    /// Another `<m>`.
    Unhandled(u8),
}

impl fmt::Display for AtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AtError::Io(e) => write!(f, "i/o error: {e}"),
            AtError::Closed => f.write_str("the port was closed"),
            AtError::Timeout { waiting_for } => write!(f, "no answer to {waiting_for}"),
            AtError::Rejected { command, response } => match cme_meaning(response) {
                Some(meaning) => write!(f, "{command} answered {response} ({meaning})"),
                None => write!(f, "{command} answered {response}"),
            },
            AtError::Terminated => f.write_str("the network ended the USSD session without a reply (+CUSD: 2)"),
            AtError::OtherClient => f.write_str("another client on the modem answered the USSD session (+CUSD: 3)"),
            AtError::NotSupported => f.write_str("USSD is not supported by the modem or the network (+CUSD: 4)"),
            AtError::NetworkTimeout => f.write_str("the network timed out the USSD session (+CUSD: 5)"),
            AtError::Unhandled(m) => write!(f, "unexpected USSD status +CUSD: {m}"),
        }
    }
}

impl std::error::Error for AtError {}

/// What the common `+CME ERROR` numbers mean (27.007 §9.2), for the log.
fn cme_meaning(response: &str) -> Option<&'static str> {
    let code: u32 = response.strip_prefix("+CME ERROR:")?.trim().parse().ok()?;
    Some(match code {
        3 => "operation not allowed",
        4 => "operation not supported",
        10 => "SIM not inserted",
        11 => "SIM PIN required",
        12 => "SIM PUK required",
        13 => "SIM failure",
        14 => "SIM busy",
        15 => "SIM wrong",
        30 => "no network service",
        31 => "network timeout",
        32 => "network not allowed, emergency calls only",
        100 => "unknown error",
        _ => return None,
    })
}

/// One dialogue with a modem over `io`. Create it, `init`, then `ussd` as often as needed.
pub struct Dialogue<S> {
    io: S,
    buf: Vec<u8>,
    /// The last command sent, to recognise its echo.
    last_command: String,
    /// The modem's `+CSCS`, if `init` could read it.
    pub charset: Option<Charset>,
    /// What was said, for `/probe?debug=true` (replies shortened, long digit runs masked).
    pub transcript: Vec<String>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Dialogue<S> {
    pub fn new(io: S) -> Dialogue<S> {
        Dialogue { io, buf: Vec::new(), last_command: String::new(), charset: None, transcript: Vec::new() }
    }

    /// `ATE0` (echo off; a modem that refuses keeps echoing, which the reader tolerates), `AT`
    /// (must answer `OK`), and `AT+CSCS?` to learn how 7-bit replies will look.
    pub async fn init(&mut self, until: Instant) -> Result<(), AtError> {
        let step = || until.min(Instant::now() + INIT_WAIT);
        match self.command("ATE0", step()).await {
            Ok(_) | Err(AtError::Rejected { .. }) => {}
            Err(e) => return Err(e),
        }
        self.command("AT", step()).await?;
        self.charset = match self.command("AT+CSCS?", step()).await {
            Ok(lines) => {
                lines.iter().find_map(|l| l.strip_prefix("+CSCS:").map(Charset::parse)).or(Some(Charset::Text))
            }
            Err(AtError::Rejected { .. } | AtError::Timeout { .. }) => None,
            Err(e) => return Err(e),
        };
        Ok(())
    }

    /// Sends `command` and reads up to its final result code; returns the information lines.
    pub async fn command(&mut self, command: &str, until: Instant) -> Result<Vec<String>, AtError> {
        self.send(command, until).await?;
        let mut info = Vec::new();
        loop {
            let Some(line) = self.next_line(until).await? else {
                return Err(AtError::Timeout { waiting_for: command.to_string() });
            };
            if self.is_echo(&line) || line.starts_with("+CUSD:") {
                continue;
            }
            if line == "OK" {
                return Ok(info);
            }
            if is_error(&line) {
                return Err(AtError::Rejected { command: command.to_string(), response: line });
            }
            info.push(line);
        }
    }

    /// One USSD request. Returns every `+CUSD:` line that carried text, in arrival order; the
    /// caller decodes them and picks the answer. Cancels the session on `m=1` and on timeout.
    /// After an `m=2` with text (an operator's release notice, or the answer itself) it keeps
    /// listening for `release_wait` in case the answer follows.
    pub async fn ussd(&mut self, code: &str, until: Instant, release_wait: Duration) -> Result<Vec<Cusd>, AtError> {
        let mut request = format!("AT+CUSD=1,\"{code}\",15");
        self.send(&request, until).await?;
        let mut replies: Vec<Cusd> = Vec::new();
        let mut listen_until = until;
        let mut encoded_tried = false;
        let mut got_ok = false;
        loop {
            let Some(line) = self.next_line(listen_until).await? else {
                if !replies.is_empty() {
                    break;
                }
                self.cancel().await;
                return Err(AtError::Timeout { waiting_for: format!("{request} (no +CUSD reply)") });
            };
            if self.is_echo(&line) {
                continue;
            }
            if line == "OK" {
                got_ok = true;
                continue;
            }
            if is_error(&line) {
                if !replies.is_empty() {
                    continue;
                }
                // A modem in UCS2 or HEX charset may want the code in that charset (what
                // ModemManager sends first); try that once, without touching +CSCS.
                if !encoded_tried && matches!(self.charset, Some(Charset::Ucs2 | Charset::Hex)) {
                    encoded_tried = true;
                    let encoded = match self.charset {
                        Some(Charset::Ucs2) => codec::encode_ucs2_hex(code),
                        _ => code.bytes().map(|b| format!("{b:02X}")).collect(),
                    };
                    request = format!("AT+CUSD=1,\"{encoded}\",15");
                    self.send(&request, until).await?;
                    continue;
                }
                return Err(AtError::Rejected { command: request, response: line });
            }
            let Some(cusd) = parse_cusd(&line) else {
                continue; // unsolicited noise (^RSSI, +CREG, garbage)
            };
            match (cusd.m, cusd.text.is_some()) {
                (0, _) => {
                    replies.push(cusd);
                    break;
                }
                (1, _) => {
                    replies.push(cusd);
                    self.cancel().await;
                    return Ok(replies);
                }
                (2, true) => {
                    replies.push(cusd);
                    listen_until = until.min(Instant::now() + release_wait);
                }
                (2, false) if !replies.is_empty() => break,
                (2, false) => return Err(AtError::Terminated),
                (3, _) => return Err(AtError::OtherClient),
                (4, _) => return Err(AtError::NotSupported),
                (5, _) => return Err(AtError::NetworkTimeout),
                (m, _) => return Err(AtError::Unhandled(m)),
            }
        }
        if !got_ok {
            // A modem that blocks until the network answers sends OK right after the reply.
            let settle = until.min(Instant::now() + SETTLE_WAIT);
            while let Ok(Some(line)) = self.next_line(settle).await {
                if line == "OK" || is_error(&line) {
                    break;
                }
            }
        }
        Ok(replies)
    }

    /// `AT+CUSD=2`, best effort: ends an open session so that the next request is not refused.
    /// It takes its own short window: callers keep that much time in hand before the poll's
    /// deadline, so a timed-out request still gets cancelled.
    pub async fn cancel(&mut self) {
        let _ = self.command("AT+CUSD=2", Instant::now() + CANCEL_WAIT).await;
    }

    async fn send(&mut self, command: &str, until: Instant) -> Result<(), AtError> {
        self.last_command = command.to_string();
        self.transcript.push(format!("> {command}"));
        let bytes = format!("{command}\r");
        match tokio::time::timeout_at(until, async {
            self.io.write_all(bytes.as_bytes()).await?;
            self.io.flush().await
        })
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(AtError::Io(e)),
            Err(_) => Err(AtError::Timeout { waiting_for: format!("the port to accept {command}") }),
        }
    }

    fn is_echo(&self, line: &str) -> bool {
        !self.last_command.is_empty() && line.trim() == self.last_command
    }

    /// The next non-empty line, or `None` at `until`. A `+CUSD:` whose quoted text spans
    /// several lines is returned whole; one still unterminated at `until` is returned as is.
    async fn next_line(&mut self, until: Instant) -> Result<Option<String>, AtError> {
        let mut chunk = [0u8; 512];
        loop {
            if let Some(line) = self.take_line(false) {
                self.note_received(&line);
                return Ok(Some(line));
            }
            match tokio::time::timeout_at(until, self.io.read(&mut chunk)).await {
                Err(_) => {
                    let line = self.take_line(true);
                    if let Some(line) = &line {
                        self.note_received(line);
                    }
                    return Ok(line);
                }
                Ok(Ok(0)) => return Err(AtError::Closed),
                Ok(Ok(n)) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    if self.buf.len() > MAX_LINE {
                        let keep = self.buf.len() - MAX_LINE / 2;
                        self.buf.drain(..keep);
                    }
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(AtError::Io(e)),
            }
        }
    }

    fn note_received(&mut self, line: &str) {
        if self.transcript.len() < 64 {
            self.transcript.push(format!("< {}", super::parse::excerpt(line)));
        }
    }

    /// Cuts the first complete line out of the buffer. `flush` takes an unterminated
    /// `+CUSD:` too (the deadline came before its closing quote or line end).
    fn take_line(&mut self, flush: bool) -> Option<String> {
        let start = self.buf.iter().position(|b| !matches!(b, b'\r' | b'\n' | 0))?;
        self.buf.drain(..start);
        let is_cusd = self.buf.starts_with(b"+CUSD:");
        let end = if is_cusd { cusd_end(&self.buf) } else { self.buf.iter().position(|b| matches!(b, b'\r' | b'\n')) };
        let end = match end {
            Some(end) => end,
            None if flush && is_cusd => self.buf.len(),
            None => return None,
        };
        let line: Vec<u8> = self.buf.drain(..end).collect();
        let text = String::from_utf8_lossy(&line).trim().to_string();
        (!text.is_empty()).then_some(text)
    }
}

/// Where a `+CUSD:` line ends: the first line break outside double quotes.
fn cusd_end(buf: &[u8]) -> Option<usize> {
    let mut quoted = false;
    for (i, b) in buf.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b'\r' | b'\n' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

fn is_error(line: &str) -> bool {
    line == "ERROR"
        || line.starts_with("+CME ERROR")
        || line.starts_with("+CMS ERROR")
        || line == "NO CARRIER"
        || line == "COMMAND NOT SUPPORT"
}

/// Parses `+CUSD: <m>[,"<str>"[,<dcs>]]`, tolerating spaces, a missing closing quote, and
/// firmware that leaves the quotes out.
pub fn parse_cusd(line: &str) -> Option<Cusd> {
    let rest = line.strip_prefix("+CUSD:")?.trim_start();
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let m: u8 = digits.parse().ok()?;
    let rest = rest[digits.len()..].trim_start();
    let Some(rest) = rest.strip_prefix(',') else {
        return Some(Cusd { m, text: None, dcs: None });
    };
    let rest = rest.trim_start();
    let (text, tail) = match rest.strip_prefix('"') {
        Some(quoted) => match quoted.rfind('"') {
            Some(close) => (&quoted[..close], &quoted[close + 1..]),
            None => (quoted, ""),
        },
        None => match rest.rfind(',') {
            Some(comma) if rest[comma + 1..].trim().parse::<u8>().is_ok() => (&rest[..comma], &rest[comma..]),
            _ => (rest, ""),
        },
    };
    let dcs = tail.trim().strip_prefix(',').and_then(|d| d.trim().parse::<u8>().ok());
    Some(Cusd { m, text: Some(text.to_string()), dcs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cusd_lines_parse_in_the_shapes_modems_send() {
        let c = |m, text: &str, dcs| Some(Cusd { m, text: Some(text.to_string()), dcs });
        assert_eq!(parse_cusd("+CUSD: 0,\"Balance:227,50r\",15"), c(0, "Balance:227,50r", Some(15)));
        assert_eq!(parse_cusd("+CUSD: 0, \"0032\", 72"), c(0, "0032", Some(72)));
        assert_eq!(parse_cusd("+CUSD:2,\"Balance:633,100r\""), c(2, "Balance:633,100r", None));
        assert_eq!(parse_cusd("+CUSD: 4"), Some(Cusd { m: 4, text: None, dcs: None }));
        assert_eq!(parse_cusd("+CUSD: 0,\"say \"hi\" ok\",15"), c(0, "say \"hi\" ok", Some(15)));
        assert_eq!(parse_cusd("+CUSD: 0,\"unterminated"), c(0, "unterminated", None));
        assert_eq!(parse_cusd("+CUSD: 0,Balance 5r,15"), c(0, "Balance 5r", Some(15)));
        assert_eq!(parse_cusd("+CUSD: x"), None);
        assert_eq!(parse_cusd("+CUSD: 1,\"a\nb\",15"), c(1, "a\nb", Some(15)));
    }

    #[test]
    fn cme_errors_are_explained() {
        let e = AtError::Rejected { command: "AT+CUSD=1".into(), response: "+CME ERROR: 30".into() };
        assert_eq!(e.to_string(), "AT+CUSD=1 answered +CME ERROR: 30 (no network service)");
    }

    #[test]
    fn a_multi_line_cusd_is_one_line() {
        assert_eq!(cusd_end(b"+CUSD: 0,\"a\r\nb\",15\r\nOK\r\n"), Some(18));
        assert_eq!(cusd_end(b"+CUSD: 0,\"a\r\nb"), None);
    }
}
