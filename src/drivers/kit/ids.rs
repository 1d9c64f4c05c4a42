//! MSISDNs and ICCIDs as drivers and outputs meet them: normalised from an operator's spelling,
//! turned into the form an operator wants, and masked for `esim_line_info` and the status page.
//! Masking is a method of the identifier, so that no driver needs the metrics side to show one.

/// Characters kept at the start and at the end of a masked identifier.
const KEEP_HEAD: usize = 5;
const KEEP_TAIL: usize = 2;

/// An MSISDN as given: by the config (`+` and digits) or by an operator (any spelling).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Msisdn<'a>(pub &'a str);

/// An ICCID as given (digits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Iccid<'a>(pub &'a str);

impl Msisdn<'_> {
    /// `+79261234567` → `+7926*****67` (see [`mask`]).
    pub fn masked(&self) -> String {
        mask(self.0)
    }

    /// `+` and digits from a platform's MSISDN, if it is one (5 to 15 digits, E.164's range).
    pub fn normalized(&self) -> Option<String> {
        let digits: String = self.0.chars().filter(char::is_ascii_digit).collect();
        (5..=15).contains(&digits.len()).then(|| format!("+{digits}"))
    }

    /// `7XXXXXXXXXX`: the form Russian operators (MTS, T2) want, from `+7…`, `8…` or ten
    /// digits; any other length is left as its digits.
    pub fn number11(&self) -> String {
        let digits: String = self.0.chars().filter(char::is_ascii_digit).collect();
        match digits.len() {
            10 => format!("7{digits}"),
            11 if digits.starts_with('8') => format!("7{}", &digits[1..]),
            _ => digits,
        }
    }
}

impl Iccid<'_> {
    /// `89701012345678901234` → `89701*************34` (see [`mask`]).
    pub fn masked(&self) -> String {
        mask(self.0)
    }
}

/// Keeps the first 5 and last 2 characters and stars the rest. Identifiers too short to hide
/// anything that way are starred whole.
fn mask(s: &str) -> String {
    let count = s.chars().count();
    if count <= KEEP_HEAD + KEEP_TAIL {
        return "*".repeat(count);
    }
    s.chars().enumerate().map(|(i, c)| if i < KEEP_HEAD || i >= count - KEEP_TAIL { c } else { '*' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_all_but_head_and_tail() {
        let cases = [
            ("+79261234567", "+7926*****67"),
            ("89701012345678901234", "89701*************34"),
            ("12345678", "12345*78"),
            ("1234567", "*******"),
            ("", ""),
            ("+7926123456ж", "+7926*****6ж"),
        ];
        for (input, want) in cases {
            assert_eq!(Msisdn(input).masked(), want, "{input}");
            assert_eq!(Iccid(input).masked(), want, "{input}");
        }
    }

    #[test]
    fn number11_accepts_plus7_8_and_ten_digits() {
        assert_eq!(Msisdn("+79161234567").number11(), "79161234567");
        assert_eq!(Msisdn("89161234567").number11(), "79161234567");
        assert_eq!(Msisdn("9161234567").number11(), "79161234567");
        assert_eq!(Msisdn("+4915112345678").number11(), "4915112345678");
    }

    #[test]
    fn normalized_keeps_5_to_15_digits() {
        assert_eq!(Msisdn("49 151 1234").normalized().as_deref(), Some("+491511234"));
        assert_eq!(Msisdn("1234").normalized(), None);
        assert_eq!(Msisdn("1234567890123456").normalized(), None);
    }
}
