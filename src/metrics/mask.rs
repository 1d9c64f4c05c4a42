//! Masking of MSISDNs and ICCIDs for `esim_line_info` and the status page.

/// Characters kept at the start and at the end of a masked identifier.
const KEEP_HEAD: usize = 5;
const KEEP_TAIL: usize = 2;

/// Keeps the first 5 and last 2 characters and stars the rest: `+79261234567` →
/// `+7926*****67`. Identifiers too short to hide anything that way are starred whole.
pub fn mask(s: &str) -> String {
    let count = s.chars().count();
    if count <= KEEP_HEAD + KEEP_TAIL {
        return "*".repeat(count);
    }
    s.chars().enumerate().map(|(i, c)| if i < KEEP_HEAD || i >= count - KEEP_TAIL { c } else { '*' }).collect()
}

#[cfg(test)]
mod tests {
    use super::mask;

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
            assert_eq!(mask(input), want, "{input}");
        }
    }
}
