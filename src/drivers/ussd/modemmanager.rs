//! The ModemManager backend: `org.freedesktop.ModemManager1.Modem.Modem3gpp.Ussd` over D-Bus
//! (`Initiate`, `Cancel`, the `State` property), and the mapping of its errors and replies.
//! ModemManager turns `+CUSD: 2,"<text>"` into the error "USSD terminated by network" and
//! drops the text; the driver then falls back to a raw AT port (see `mod.rs`).

use std::fmt;

use tokio::time::Instant;
use zbus::proxy::CacheProperties;
use zbus::{Connection, Proxy};

use super::codec;

pub const BUS_NAME: &str = "org.freedesktop.ModemManager1";
pub const USSD_INTERFACE: &str = "org.freedesktop.ModemManager1.Modem.Modem3gpp.Ussd";
pub const MODEM_PREFIX: &str = "/org/freedesktop/ModemManager1/Modem/";
/// The system bus, named explicitly: the driver reads no environment variables.
pub const SYSTEM_BUS: &str = "unix:path=/run/dbus/system_bus_socket";

/// `MMModem3gppUssdSessionState` values that mean a session is open.
const STATE_ACTIVE: u32 = 2;
const STATE_USER_RESPONSE: u32 = 3;

/// The object path of `modem:` — an index (`0`) or a full path.
pub fn modem_path(spec: &str) -> Result<String, String> {
    let spec = spec.trim();
    if !spec.is_empty() && spec.chars().all(|c| c.is_ascii_digit()) {
        return Ok(format!("{MODEM_PREFIX}{spec}"));
    }
    let valid = spec.starts_with('/')
        && !spec.ends_with('/')
        && spec[1..].split('/').all(|e| !e.is_empty() && e.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    if valid {
        Ok(spec.to_string())
    } else {
        Err(format!("`{spec}` is neither a modem index (e.g. 0) nor a D-Bus object path (e.g. {MODEM_PREFIX}0)"))
    }
}

/// What went wrong on the ModemManager side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MmError {
    /// The bus could not be reached.
    Connect(String),
    /// The operator answered with `m=2`; ModemManager discarded the text.
    TerminatedByNetwork,
    /// A USSD operation is already running on the modem.
    Busy,
    /// The modem has no USSD support (or ModemManager says the operation is unsupported).
    NotSupported(String),
    /// No modem (or no USSD interface) at that path, or ModemManager is not running.
    NoModem(String),
    /// The network timed the session out.
    NetworkTimeout,
    /// Our deadline passed; the session was cancelled.
    Timeout,
    Failed(String),
}

impl fmt::Display for MmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MmError::Connect(e) => write!(f, "cannot reach D-Bus: {e}"),
            MmError::TerminatedByNetwork => f.write_str("ModemManager: USSD terminated by network (its text is lost)"),
            MmError::Busy => f.write_str("ModemManager: another USSD operation is in progress on the modem"),
            MmError::NotSupported(e) => write!(f, "ModemManager: USSD not supported: {e}"),
            MmError::NoModem(e) => write!(f, "ModemManager: {e}"),
            MmError::NetworkTimeout => f.write_str("ModemManager: the network timed out the USSD session"),
            MmError::Timeout => f.write_str("ModemManager: no USSD reply before the deadline"),
            MmError::Failed(e) => write!(f, "ModemManager: {e}"),
        }
    }
}

/// Classifies a D-Bus error reply by its name and message, as ModemManager words them
/// (`src/mm-broadband-modem.c`, `mm-iface-modem-3gpp-ussd.c`).
pub fn map_error(name: Option<&str>, message: &str) -> MmError {
    let name = name.unwrap_or("");
    let lower = message.to_lowercase();
    if lower.contains("terminated by network") {
        MmError::TerminatedByNetwork
    } else if lower.contains("already an ongoing ussd")
        || lower.contains("in-progress")
        || name.ends_with(".InProgress")
    {
        MmError::Busy
    } else if name.ends_with(".ServiceUnknown") || name.ends_with(".NameHasNoOwner") {
        MmError::NoModem("ModemManager is not running on this bus".into())
    } else if name.ends_with(".UnknownObject")
        || name.ends_with(".UnknownInterface")
        || name.ends_with(".UnknownMethod")
    {
        MmError::NoModem(format!("no modem with USSD support at that path ({})", short(message)))
    } else if lower.contains("not supported") || lower.contains("no 3gpp ussd") || name.ends_with(".Unsupported") {
        MmError::NotSupported(short(message))
    } else if lower.contains("network timeout")
        || lower.contains("network time-out")
        || name.ends_with(".NetworkTimeout")
    {
        MmError::NetworkTimeout
    } else if message.trim().is_empty() {
        MmError::Failed(if name.is_empty() { "unknown error".into() } else { name.to_string() })
    } else {
        MmError::Failed(short(message))
    }
}

fn short(text: &str) -> String {
    super::parse::excerpt(text)
}

/// The reply text as the driver should read it: ModemManager decodes hex with the modem's
/// `+CSCS`, ignoring `<dcs>`, so a UCS2 reply on a modem in another charset arrives as hex.
pub fn reply_text(reply: &str) -> String {
    let trimmed = reply.trim();
    if trimmed.len() >= 4 && trimmed.len().is_multiple_of(4) {
        if let Some(text) = codec::ucs2_hex(trimmed).filter(|t| codec::plausible(t)) {
            return text;
        }
    }
    trimmed.to_string()
}

/// True when a reply looks mis-decoded: UCS2 read in an 8-bit charset drops the high byte
/// of every Cyrillic letter (`р` U+0440 turns into `@`), or the text is not text at all.
pub fn looks_garbled(text: &str) -> bool {
    let at_signs = text.chars().filter(|c| *c == '@').count();
    let cyrillic = text.chars().any(|c| matches!(c, 'А'..='я' | 'Ё' | 'ё'));
    !codec::plausible(text) || (!cyrillic && at_signs >= 2 && at_signs * 10 >= text.chars().count())
}

/// One connection to ModemManager's USSD interface on one modem, for one poll.
pub struct MmSession {
    // The proxy borrows nothing, but the connection must outlive it.
    _connection: Connection,
    proxy: Proxy<'static>,
}

impl MmSession {
    pub async fn connect(address: &str, path: &str, until: Instant) -> Result<MmSession, MmError> {
        let connect = async {
            let connection = zbus::connection::Builder::address(address)?.build().await?;
            let proxy = zbus::proxy::Builder::<Proxy<'static>>::new(&connection)
                .destination(BUS_NAME)?
                .path(path.to_string())?
                .interface(USSD_INTERFACE)?
                .cache_properties(CacheProperties::No)
                .build()
                .await?;
            Ok::<_, zbus::Error>(MmSession { _connection: connection, proxy })
        };
        match tokio::time::timeout_at(until, connect).await {
            Ok(Ok(session)) => Ok(session),
            Ok(Err(e)) => Err(MmError::Connect(format!("{address}: {e}"))),
            Err(_) => Err(MmError::Connect(format!("{address}: timed out"))),
        }
    }

    /// `Initiate(code)`, after cancelling a session left open; cancels again when the network
    /// waits for a menu choice (`USER_RESPONSE`) or when the deadline passes.
    pub async fn initiate(&self, code: &str, until: Instant) -> Result<String, MmError> {
        if matches!(self.state(until).await, Ok(STATE_ACTIVE | STATE_USER_RESPONSE)) {
            self.cancel().await;
        }
        let body = (code,);
        let call = self.proxy.call::<_, _, String>("Initiate", &body);
        match tokio::time::timeout_at(until, call).await {
            Err(_) => {
                self.cancel().await;
                Err(MmError::Timeout)
            }
            Ok(Err(e)) => Err(from_zbus(&e)),
            Ok(Ok(reply)) => {
                if matches!(self.state(until).await, Ok(STATE_USER_RESPONSE)) {
                    self.cancel().await;
                }
                Ok(reply)
            }
        }
    }

    async fn state(&self, until: Instant) -> Result<u32, MmError> {
        match tokio::time::timeout_at(until, self.proxy.get_property::<u32>("State")).await {
            Ok(Ok(state)) => Ok(state),
            Ok(Err(e)) => Err(from_zbus(&e)),
            Err(_) => Err(MmError::Timeout),
        }
    }

    /// `Cancel()`, best effort, within a short window of its own.
    pub async fn cancel(&self) {
        let until = Instant::now() + std::time::Duration::from_millis(1000);
        let _ = tokio::time::timeout_at(until, self.proxy.call::<_, _, ()>("Cancel", &())).await;
    }
}

fn from_zbus(e: &zbus::Error) -> MmError {
    match e {
        zbus::Error::MethodError(name, detail, _) => map_error(Some(name.as_str()), detail.as_deref().unwrap_or("")),
        zbus::Error::FDO(fdo) => {
            let text = fdo.to_string();
            let name = text.split(':').next().map(str::trim);
            map_error(name, &text)
        }
        other => MmError::Failed(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modem_specs_become_object_paths() {
        assert_eq!(modem_path("0").unwrap(), "/org/freedesktop/ModemManager1/Modem/0");
        assert_eq!(
            modem_path("/org/freedesktop/ModemManager1/Modem/12").unwrap(),
            "/org/freedesktop/ModemManager1/Modem/12"
        );
        assert!(modem_path("modem-1").is_err());
        assert!(modem_path("/a//b").is_err());
        assert!(modem_path("").is_err());
    }

    #[test]
    fn modemmanager_errors_map_to_what_the_driver_does_next() {
        let core = Some("org.freedesktop.ModemManager1.Error.Core.Failed");
        assert_eq!(map_error(core, "USSD terminated by network"), MmError::TerminatedByNetwork);
        assert_eq!(map_error(core, "there is already an ongoing USSD operation"), MmError::Busy);
        assert_eq!(
            map_error(Some("org.freedesktop.ModemManager1.Error.Core.Unsupported"), "Operation not supported"),
            MmError::NotSupported("Operation not supported".into())
        );
        assert!(matches!(map_error(Some("org.freedesktop.DBus.Error.ServiceUnknown"), "x"), MmError::NoModem(_)));
        assert!(matches!(
            map_error(Some("org.freedesktop.DBus.Error.UnknownObject"), "no such object"),
            MmError::NoModem(_)
        ));
        assert!(matches!(
            map_error(Some("org.freedesktop.DBus.Error.UnknownMethod"), "No such interface"),
            MmError::NoModem(_)
        ));
        assert_eq!(
            map_error(core, "modem has no 3GPP USSD capabilities"),
            MmError::NotSupported("modem has no 3GPP USSD capabilities".into())
        );
        assert_eq!(map_error(Some("x.NetworkTimeout"), ""), MmError::NetworkTimeout);
        assert_eq!(map_error(core, "modem not enabled yet"), MmError::Failed("modem not enabled yet".into()));
        assert_eq!(map_error(None, ""), MmError::Failed("unknown error".into()));
    }

    #[test]
    fn replies_left_in_ucs2_hex_are_decoded_and_garbled_ones_recognised() {
        assert_eq!(reply_text("04110430043b0430043d0441003a003200390036002c003000320440"), "Баланс:296,02р");
        assert_eq!(reply_text("Balance:227,50r"), "Balance:227,50r");
        assert_eq!(reply_text("1234"), "1234");
        assert!(looks_garbled("799.55@.+1000@ 70 25@=K5"));
        assert!(!looks_garbled("Баланс: 5 р. Пишите на help@mts.ru"));
        assert!(!looks_garbled("Balance:227,50r"));
    }
}
