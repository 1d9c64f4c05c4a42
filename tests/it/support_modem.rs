//! A simulated modem for the `ussd` tests: it speaks AT over any async byte stream — an
//! in-memory pipe, or the master side of a pseudo-terminal whose slave path the driver (or the
//! real binary) opens as its serial port. Behaviour is scripted per USSD code: UCS2 and GSM
//! 7-bit replies, `m=2` answers, release-then-answer, silence, `+CME ERROR`, echo that `ATE0`
//! does not turn off, bytes dribbled one by one, unsolicited noise and garbage, a modem that
//! blocks until the network answers, a modem in UCS2 charset that wants the code in hex.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How the modem answers one USSD code.
#[derive(Clone, Debug)]
pub enum Answer {
    /// `OK`, then each line after the script's `delay`.
    After(Vec<String>),
    /// The lines, then `OK` (a modem that blocks until the network answers).
    Before(Vec<String>),
    /// `OK`, and then nothing.
    Silence,
    /// A final result code instead of `OK` (`ERROR`, `+CME ERROR: 30`).
    Fail(String),
}

#[derive(Clone, Debug)]
pub struct Script {
    /// Answers by USSD code (as the driver dials it, e.g. `*100#`).
    pub answers: Vec<(String, Answer)>,
    /// Echo on at start.
    pub echo: bool,
    /// `ATE0` answers `ERROR` and echo stays on.
    pub refuse_ate0: bool,
    /// What `AT+CSCS?` reports: `GSM`, `UCS2` or `HEX`.
    pub charset: &'static str,
    /// A plain-text code is refused: the modem wants it in its (UCS2) charset.
    pub want_encoded: bool,
    /// Write every byte separately with this pause.
    pub dribble: Option<Duration>,
    /// Unsolicited lines and junk bytes before every answer.
    pub garbage: bool,
    /// Pause before each reply line of [`Answer::After`].
    pub delay: Duration,
}

impl Default for Script {
    fn default() -> Script {
        Script {
            answers: Vec::new(),
            echo: false,
            refuse_ate0: false,
            charset: "GSM",
            want_encoded: false,
            dribble: None,
            garbage: false,
            delay: Duration::from_millis(20),
        }
    }
}

impl Script {
    pub fn answer(mut self, code: &str, answer: Answer) -> Script {
        self.answers.push((code.to_string(), answer));
        self
    }
}

/// `+CUSD: m,"text",dcs`.
pub fn cusd(m: u8, text: &str, dcs: u8) -> String {
    format!("+CUSD: {m},\"{text}\",{dcs}")
}

/// Text as UCS2 hex, as modems send Cyrillic.
pub fn ucs2(text: &str) -> String {
    text.encode_utf16().map(|u| format!("{u:04X}")).collect()
}

/// What the modem saw and how the dialogue went.
#[derive(Clone, Debug, Default)]
pub struct Log {
    /// Every command received, in order.
    pub commands: Vec<String>,
    /// A USSD request arrived while another session was still open.
    pub overlaps: usize,
}

pub type SharedLog = Arc<Mutex<Log>>;

pub fn commands(log: &SharedLog) -> Vec<String> {
    log.lock().unwrap().commands.clone()
}

/// Serves `script` on `io` until the other side goes away.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut io: S, script: Script, log: SharedLog) {
    let mut echo = script.echo;
    let mut pending: Vec<u8> = Vec::new();
    let mut open_session = false;
    let mut chunk = [0u8; 256];
    loop {
        let n = match io.read(&mut chunk).await {
            Ok(0) => return,
            Ok(n) => n,
            // The master side of a pty fails reads while no one has the slave open (between
            // two polls): wait for the next opener.
            Err(e) if e.raw_os_error() == Some(5) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            Err(_) => return,
        };
        pending.extend_from_slice(&chunk[..n]);
        while let Some(end) = pending.iter().position(|b| *b == b'\r' || *b == b'\n') {
            let raw: Vec<u8> = pending.drain(..=end).collect();
            let command = String::from_utf8_lossy(&raw).trim().to_string();
            if command.is_empty() {
                continue;
            }
            log.lock().unwrap().commands.push(command.clone());
            let mut out: Vec<(Duration, String)> = Vec::new();
            if echo {
                out.push((Duration::ZERO, format!("{command}\r")));
            }
            if script.garbage {
                say(&mut out, "^RSSI: 17");
                out.push((Duration::ZERO, "\u{1}\u{7f}~~%$ junk \u{fffd}\r\n+CREG: 1,\"00AB\"\r\n".to_string()));
            }
            match command.as_str() {
                "ATE0" if script.refuse_ate0 => say(&mut out, "ERROR"),
                "ATE0" => {
                    echo = false;
                    say(&mut out, "OK");
                }
                "ATE1" => {
                    echo = true;
                    say(&mut out, "OK");
                }
                "AT" => say(&mut out, "OK"),
                "AT+CSCS?" => {
                    say(&mut out, &format!("+CSCS: \"{}\"", script.charset));
                    say(&mut out, "OK");
                }
                "AT+CUSD=2" => {
                    open_session = false;
                    say(&mut out, "OK");
                }
                c if c.starts_with("AT+CUSD=1,") => {
                    if open_session {
                        log.lock().unwrap().overlaps += 1;
                    }
                    let requested = c.split('"').nth(1).unwrap_or("").to_string();
                    let plain = decode_code(&requested, script.charset);
                    let answer = script.answers.iter().find(|(code, _)| *code == plain).map(|(_, a)| a.clone());
                    match answer {
                        _ if script.want_encoded && requested == plain => say(&mut out, "ERROR"),
                        None => say(&mut out, "+CME ERROR: 100"),
                        Some(Answer::Fail(code)) => say(&mut out, &code),
                        Some(Answer::Silence) => {
                            open_session = true;
                            say(&mut out, "OK");
                        }
                        Some(Answer::Before(lines)) => {
                            for line in &lines {
                                say(&mut out, line);
                            }
                            say(&mut out, "OK");
                        }
                        Some(Answer::After(lines)) => {
                            open_session = true;
                            say(&mut out, "OK");
                            for line in &lines {
                                out.push((script.delay, format!("\r\n{line}\r\n")));
                            }
                        }
                    }
                }
                _ => say(&mut out, "ERROR"),
            }
            for (pause, text) in out {
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
                if text.starts_with("\r\n+CUSD: 0") || text.starts_with("\r\n+CUSD: 2") {
                    open_session = false;
                }
                if write(&mut io, text.as_bytes(), script.dribble).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn say(out: &mut Vec<(Duration, String)>, line: &str) {
    out.push((Duration::ZERO, format!("\r\n{line}\r\n")));
}

/// A code the driver sent in the modem's charset (UCS2 hex) back to plain text.
fn decode_code(code: &str, charset: &str) -> String {
    if charset == "UCS2"
        && code.len().is_multiple_of(4)
        && !code.is_empty()
        && code.bytes().all(|b| b.is_ascii_hexdigit())
    {
        let units: Vec<u16> =
            (0..code.len() / 4).map(|i| u16::from_str_radix(&code[i * 4..i * 4 + 4], 16).unwrap()).collect();
        return String::from_utf16_lossy(&units);
    }
    code.to_string()
}

async fn write<S: AsyncWrite + Unpin>(io: &mut S, bytes: &[u8], dribble: Option<Duration>) -> std::io::Result<()> {
    match dribble {
        None => {
            io.write_all(bytes).await?;
            io.flush().await
        }
        Some(pause) => {
            for b in bytes {
                io.write_all(&[*b]).await?;
                io.flush().await?;
                tokio::time::sleep(pause).await;
            }
            Ok(())
        }
    }
}

/// A simulated modem on an in-memory pipe, served on the current runtime.
pub fn on_pipe(script: Script) -> (tokio::io::DuplexStream, SharedLog) {
    let (ours, theirs) = tokio::io::duplex(4096);
    let log = SharedLog::default();
    tokio::spawn(serve(theirs, script, log.clone()));
    (ours, log)
}

/// A simulated modem behind a pseudo-terminal, served by a thread of its own (so that a
/// synchronous test, or the real binary, can use it). `path` is the serial port to open; the
/// simulator keeps the master side and waits while nobody has the port open.
pub struct PtyModem {
    pub path: String,
    pub log: SharedLog,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl PtyModem {
    pub fn start(script: Script) -> PtyModem {
        let log = SharedLog::default();
        let (path_tx, path_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = log.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async move {
                use tokio_serial::SerialPort;
                let (master, slave) = tokio_serial::SerialStream::pair().expect("a pseudo-terminal pair");
                let name = slave.name().expect("pty slave name");
                // The driver opens the slave itself, with an exclusive lock: let go of ours.
                drop(slave);
                path_tx.send(name).expect("send path");
                tokio::select! {
                    _ = serve(master, script, served) => {}
                    _ = stopped => {}
                }
            });
        });
        let path = path_rx.recv_timeout(Duration::from_secs(10)).expect("pty modem started");
        PtyModem { path, log, stop: Some(stop) }
    }

    pub fn commands(&self) -> Vec<String> {
        commands(&self.log)
    }
}

impl Drop for PtyModem {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
