//! USSD text decoding: the `<dcs>` of a `+CUSD:` line (3GPP TS 23.038, CBS data coding scheme)
//! first, then the form the modem chose for `<str>`: GSM 7-bit text, GSM 7-bit septets in hex
//! (unpacked, or packed as some Huawei firmware sends), UCS2 hex, 8-bit hex. Pure functions
//! over strings and bytes; nothing here panics on any input (property-tested and fuzzed).

/// The alphabet a `<dcs>` announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alphabet {
    /// GSM 7-bit default alphabet: `<str>` is in the modem's TE charset (`+CSCS`).
    Gsm7,
    /// GSM 7-bit, the message starts with a language indication (`xx` + CR), DCS 0x10.
    Gsm7WithLanguage,
    /// UCS2 (UTF-16BE), always hex octets in `<str>`.
    Ucs2,
    /// UCS2 preceded by two packed GSM 7-bit language characters (two octets), DCS 0x11.
    Ucs2WithLanguage,
    /// 8-bit data, hex octets in `<str>`.
    EightBit,
    /// Compressed text (TS 23.042), which no modem in the field sends; shown as received.
    Compressed,
}

/// The modem's TE character set (`AT+CSCS?`), which shapes `<str>` for 7-bit `<dcs>` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Charset {
    /// "GSM" or "IRA" (plain text), and anything else we do not know.
    Text,
    /// "UCS2": 7-bit replies arrive as UCS2 hex too.
    Ucs2,
    /// "HEX": 7-bit replies arrive as septet values in hex.
    Hex,
}

impl Charset {
    /// Reads the value of `+CSCS: "<name>"`.
    pub fn parse(name: &str) -> Charset {
        match name.trim().trim_matches('"').to_ascii_uppercase().as_str() {
            "UCS2" => Charset::Ucs2,
            "HEX" => Charset::Hex,
            _ => Charset::Text,
        }
    }
}

/// Classifies a CBS data coding scheme (TS 23.038 §5). Reserved values read as GSM 7-bit, as
/// the standard asks of receivers.
pub fn alphabet(dcs: u8) -> Alphabet {
    match dcs >> 4 {
        0x0 | 0x2 | 0x3 => Alphabet::Gsm7,
        0x1 => match dcs {
            0x10 => Alphabet::Gsm7WithLanguage,
            0x11 => Alphabet::Ucs2WithLanguage,
            _ => Alphabet::Gsm7,
        },
        // General data coding (01xx) and message with user data header (1001): bit 5 is
        // "compressed" for the former, bits 3-2 the alphabet for both.
        0x4..=0x7 | 0x9 => {
            if dcs >> 4 != 0x9 && dcs & 0x20 != 0 {
                return Alphabet::Compressed;
            }
            match (dcs >> 2) & 0x03 {
                0b01 => Alphabet::EightBit,
                0b10 => Alphabet::Ucs2,
                _ => Alphabet::Gsm7,
            }
        }
        // Data coding / message class: bit 2 chooses 8-bit over 7-bit.
        0xF => {
            if dcs & 0x04 != 0 {
                Alphabet::EightBit
            } else {
                Alphabet::Gsm7
            }
        }
        _ => Alphabet::Gsm7,
    }
}

/// Decodes the `<str>` of a `+CUSD:` line. `dcs` absent means 7-bit (the 27.007 default);
/// `charset` is what `AT+CSCS?` said, when the dialogue asked.
pub fn decode(raw: &str, dcs: Option<u8>, charset: Option<Charset>) -> String {
    let raw = raw.trim_matches(|c: char| c == '\0');
    let text = match dcs.map(alphabet).unwrap_or(Alphabet::Gsm7) {
        Alphabet::Ucs2 => ucs2_hex(raw).unwrap_or_else(|| raw.to_string()),
        Alphabet::Ucs2WithLanguage => match hex(raw) {
            Some(bytes) if bytes.len() >= 2 && bytes.len() % 2 == 0 => ucs2(&bytes[2..]),
            _ => raw.to_string(),
        },
        Alphabet::EightBit => hex(raw).map(|b| eight_bit(&b)).unwrap_or_else(|| raw.to_string()),
        Alphabet::Gsm7 => gsm7_str(raw, charset),
        Alphabet::Gsm7WithLanguage => strip_language(&gsm7_str(raw, charset)),
        Alphabet::Compressed => raw.to_string(),
    };
    clean(&text)
}

/// A 7-bit `<str>`: text as is, or hex in one of the shapes firmware uses, chosen by the
/// modem's charset when known and by plausibility otherwise.
fn gsm7_str(raw: &str, charset: Option<Charset>) -> String {
    let Some(bytes) = hex(raw) else {
        return raw.to_string();
    };
    match charset {
        Some(Charset::Ucs2) if bytes.len() % 2 == 0 => return ucs2(&bytes),
        Some(Charset::Hex) if bytes.iter().all(|b| *b < 0x80) => return gsm7_septets(&bytes),
        _ => {}
    }
    // Short digit strings ("100", "2024") are more likely text than hex.
    if raw.len() < 8 && raw.bytes().all(|b| b.is_ascii_digit()) {
        return raw.to_string();
    }
    let candidates = [
        (bytes.len() % 2 == 0).then(|| ucs2(&bytes)),
        bytes.iter().all(|b| *b < 0x80).then(|| gsm7_septets(&bytes)),
        Some(gsm7_septets(&unpack_septets(&bytes))),
    ];
    candidates.into_iter().flatten().find(|text| plausible(text)).unwrap_or_else(|| raw.to_string())
}

/// True when a decoded text looks like an operator's message: letters (Latin or Cyrillic),
/// digits, spaces and common punctuation, and nothing from scripts an operator here would
/// not use. Random hex decoded the wrong way fails this almost always.
pub fn plausible(text: &str) -> bool {
    let mut total = 0usize;
    let mut wordy = 0usize;
    for c in text.chars() {
        total += 1;
        let ok = c.is_ascii_alphanumeric()
            || matches!(c, 'А'..='я' | 'Ё' | 'ё' | ' ' | '\n' | '\r' | '\u{a0}')
            || ".,:;!?-+*#%()/\"'«»№₽$€=_&@<>[]".contains(c)
            || matches!(c, '\u{2010}'..='\u{2027}' | '\u{2212}');
        let foreign = c.is_control() && !matches!(c, '\n' | '\r')
            || matches!(c, '\u{0500}'..='\u{1fff}' | '\u{2c00}'..='\u{ffff}');
        if foreign {
            return false;
        }
        if ok {
            wordy += 1;
        }
    }
    total > 0 && wordy * 10 >= total * 9
}

/// Hex digits to bytes; `None` unless the text is non-empty, of even length and all hex.
pub fn hex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if text.is_empty() || !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let digit = |b: u8| match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    };
    Some(text.as_bytes().chunks_exact(2).map(|p| digit(p[0]) << 4 | digit(p[1])).collect())
}

/// UCS2 hex (a multiple of four digits) to text.
pub fn ucs2_hex(text: &str) -> Option<String> {
    let bytes = hex(text)?;
    (bytes.len() % 2 == 0).then(|| ucs2(&bytes))
}

/// UTF-16BE octets to text; an odd trailing octet is dropped, lone surrogates become U+FFFD.
pub fn ucs2(bytes: &[u8]) -> String {
    let units = bytes.chunks_exact(2).map(|p| u16::from_be_bytes([p[0], p[1]]));
    char::decode_utf16(units).map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER)).collect()
}

/// Encodes text as UCS2 hex (upper case), the way a modem in `+CSCS="UCS2"` expects commands.
pub fn encode_ucs2_hex(text: &str) -> String {
    text.encode_utf16().map(|u| format!("{u:04X}")).collect()
}

/// 8-bit data: ASCII or UTF-8 as such; otherwise Windows-1251 (the Cyrillic code page gateways
/// here use), with bytes outside its letters read as Latin-1.
fn eight_bit(bytes: &[u8]) -> String {
    if let Ok(text) = std::str::from_utf8(bytes) {
        return text.to_string();
    }
    bytes
        .iter()
        .map(|&b| match b {
            0xC0..=0xFF => char::from_u32(0x0410 + u32::from(b - 0xC0)).unwrap_or('?'),
            0xA8 => 'Ё',
            0xB8 => 'ё',
            0xB9 => '№',
            _ => char::from(b),
        })
        .collect()
}

/// Unpacks GSM 7-bit septets from octets (TS 23.038 §6.1.2.1.1). Seven spare zero bits at the
/// end are padding, not an `@`; a final CR in that position is the padding USSD prescribes
/// (§6.1.2.3.1), so it is dropped as well.
pub fn unpack_septets(bytes: &[u8]) -> Vec<u8> {
    let count = bytes.len() * 8 / 7;
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let bit = i * 7;
        let (byte, shift) = (bit / 8, bit % 8);
        let low = u16::from(bytes[byte]) >> shift;
        let high = bytes.get(byte + 1).map_or(0, |b| u16::from(*b) << (8 - shift));
        out.push(((low | high) & 0x7F) as u8);
    }
    if (bytes.len() * 8).is_multiple_of(7) && matches!(out.last(), Some(0x00 | 0x0D)) {
        out.pop();
    }
    out
}

/// Packs GSM 7-bit septets into octets (the inverse of [`unpack_septets`], with CR padding).
pub fn pack_septets(septets: &[u8]) -> Vec<u8> {
    let mut septets = septets.to_vec();
    if septets.len() % 8 == 7 {
        septets.push(0x0D);
    }
    let mut out = vec![0u8; (septets.len() * 7).div_ceil(8)];
    for (i, s) in septets.iter().enumerate() {
        let bit = i * 7;
        let (byte, shift) = (bit / 8, bit % 8);
        let v = u16::from(s & 0x7F) << shift;
        out[byte] |= v as u8;
        if shift > 1 {
            if let Some(next) = out.get_mut(byte + 1) {
                *next |= (v >> 8) as u8;
            }
        }
    }
    out
}

/// The GSM 7-bit default alphabet (TS 23.038 §6.2.1); 0x1B is the escape to the extension table.
const GSM7: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1b}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// Septet values (one per byte, high bit ignored) to text, with the extension table.
pub fn gsm7_septets(septets: &[u8]) -> String {
    let mut out = String::with_capacity(septets.len());
    let mut escaped = false;
    for &s in septets {
        let s = s & 0x7F;
        if escaped {
            escaped = false;
            out.push(match s {
                0x0A => '\u{c}',
                0x14 => '^',
                0x28 => '{',
                0x29 => '}',
                0x2F => '\\',
                0x3C => '[',
                0x3D => '~',
                0x3E => ']',
                0x40 => '|',
                0x65 => '€',
                // An unknown escape shows the base character (§6.2.1.1).
                other => GSM7[usize::from(other)],
            });
        } else if s == 0x1B {
            escaped = true;
        } else {
            out.push(GSM7[usize::from(s)]);
        }
    }
    out
}

/// Drops a language indication (two letters and CR) from the start of a DCS 0x10 message.
fn strip_language(text: &str) -> String {
    let mut chars = text.chars();
    match (chars.next(), chars.next(), chars.next()) {
        (Some(a), Some(b), Some('\r' | '\n')) if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
            chars.as_str().to_string()
        }
        _ => text.to_string(),
    }
}

/// Line ends to `\n`, trailing padding and NULs off.
fn clean(text: &str) -> String {
    let text = text.replace("\r\n", "\n").replace('\r', "\n").replace('\0', "");
    text.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn dcs_values_from_the_field_classify_as_the_standard_says() {
        assert_eq!(alphabet(0x0F), Alphabet::Gsm7);
        assert_eq!(alphabet(0x00), Alphabet::Gsm7);
        assert_eq!(alphabet(0x48), Alphabet::Ucs2);
        assert_eq!(alphabet(0x44), Alphabet::EightBit);
        assert_eq!(alphabet(0x40), Alphabet::Gsm7);
        assert_eq!(alphabet(0x10), Alphabet::Gsm7WithLanguage);
        assert_eq!(alphabet(0x11), Alphabet::Ucs2WithLanguage);
        assert_eq!(alphabet(0x68), Alphabet::Compressed);
        assert_eq!(alphabet(0x98), Alphabet::Ucs2);
        assert_eq!(alphabet(0xF4), Alphabet::EightBit);
        assert_eq!(alphabet(0xF0), Alphabet::Gsm7);
        assert_eq!(alphabet(0xA5), Alphabet::Gsm7);
    }

    #[test]
    fn ucs2_replies_from_the_facts_file_decode() {
        assert_eq!(decode("003200300030002E0030003000200440002E", Some(72), None), "200.00 р.");
        assert_eq!(
            decode("04110430043b0430043d0441003a003200390036002c003000320440", Some(72), None),
            "Баланс:296,02р"
        );
        // The same hex under a 7-bit DCS, as modems in UCS2 charset send it.
        assert_eq!(decode("04110430043B0430043D0441003A0031", Some(15), None), "Баланс:1");
        assert_eq!(decode("04110430043B0430043D0441003A0031", Some(15), Some(Charset::Ucs2)), "Баланс:1");
    }

    #[test]
    fn gsm7_text_passes_through_and_hex_septets_decode() {
        assert_eq!(decode("Balance:227,50r", Some(15), None), "Balance:227,50r");
        assert_eq!(decode("Balance:227,50r", None, None), "Balance:227,50r");
        // Packed septets in hex (Huawei E160 style): "hellohello".
        assert_eq!(decode("E8329BFD4697D9EC37", Some(15), None), "hellohello");
        // Unpacked septets in hex (+CSCS="HEX").
        assert_eq!(decode("42616C616E63653A31", Some(15), Some(Charset::Hex)), "Balance:1");
        // Digits alone are text, not hex.
        assert_eq!(decode("1234", Some(15), None), "1234");
    }

    #[test]
    fn eight_bit_and_language_prefixed_messages_decode() {
        assert_eq!(decode("42616C616E6365", Some(0x44), None), "Balance");
        assert_eq!(decode("C1E0EBE0EDF1", Some(0x44), None), "Баланс");
        assert_eq!(decode("RU\rБаланс 5р", Some(0x10), None), "Баланс 5р");
        // Two octets of packed language ("ru"), then UCS2 "Да".
        assert_eq!(decode("F2FA04140430", Some(0x11), None), "Да");
    }

    #[test]
    fn septet_packing_round_trips_with_cr_padding() {
        let text: Vec<u8> = b"1234567".to_vec(); // 7 septets: 8n-1 with n=1 → CR padding
        let packed = pack_septets(&text);
        assert_eq!(packed.len(), 7);
        assert_eq!(unpack_septets(&packed), text);
        assert_eq!(pack_septets(b"hellohello"), hex("E8329BFD4697D9EC37").unwrap());
    }

    #[test]
    fn the_extension_table_gives_euro_and_brackets() {
        assert_eq!(gsm7_septets(&[0x1B, 0x65, 0x31, 0x1B, 0x3C, 0x1B, 0x3E]), "€1[]");
        assert_eq!(gsm7_septets(&[0x00, 0x02, 0x11]), "@$_");
    }

    #[test]
    fn wrong_charset_bytes_are_not_taken_for_text() {
        assert!(!plausible("ሴ噸"));
        assert!(plausible("Баланс: 10,5 р. Подробнее *100#"));
        assert!(!plausible(""));
    }

    proptest! {
        #[test]
        fn decode_never_panics(raw in ".{0,200}", dcs in proptest::option::of(any::<u8>()), cs in 0u8..4) {
            let charset = [None, Some(Charset::Text), Some(Charset::Ucs2), Some(Charset::Hex)][usize::from(cs)];
            let _ = decode(&raw, dcs, charset);
        }

        #[test]
        fn decode_never_panics_on_hex(bytes in proptest::collection::vec(any::<u8>(), 0..160), dcs in any::<u8>()) {
            let raw: String = bytes.iter().map(|b| format!("{b:02X}")).collect();
            let _ = decode(&raw, Some(dcs), None);
            let _ = decode(&raw, Some(dcs), Some(Charset::Ucs2));
            let _ = decode(&raw, Some(dcs), Some(Charset::Hex));
        }

        #[test]
        fn ucs2_encoding_round_trips(text in "[А-яЁё0-9a-zA-Z ,.:;!?₽-]{1,80}") {
            prop_assert_eq!(decode(&encode_ucs2_hex(&text), Some(0x48), None), text.trim_end());
        }

        #[test]
        fn septets_round_trip(septets in proptest::collection::vec(0u8..0x80, 1..120)) {
            let unpacked = unpack_septets(&pack_septets(&septets));
            // A trailing '@' (0) or CR in the last position of an 8n-1 message is ambiguous
            // with padding by design; everything before it survives.
            prop_assert!(unpacked.len() == septets.len() || unpacked.len() + 1 == septets.len());
            prop_assert_eq!(&unpacked[..], &septets[..unpacked.len()]);
        }
    }
}
