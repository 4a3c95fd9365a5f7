//! Decimal text in PostgreSQL's binary `numeric` format, every digit kept:
//! the digits in base 10000, the weight of the first, the sign and the
//! number of digits after the point (so `1.10` reads back as `1.10`).

use bytes::{BufMut as _, BytesMut};

/// Writes `text` (a number as `crate::dbf::is_number` accepts it) as a
/// binary COPY field: its length, then the value.
pub fn put(out: &mut BytesMut, text: &str) {
    let (negative, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(at) => (&body[..at], body[at + 1..].parse::<i64>().unwrap_or(0)),
        None => (body, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let scale = (fraction.len() as i64 - exponent).clamp(0, 16_383);
    let digits = whole.bytes().chain(fraction.bytes()).map(|b| b - b'0');
    // The decimal exponent of the first digit is `point - 1`.
    let leading = whole
        .bytes()
        .chain(fraction.bytes())
        .take_while(|b| *b == b'0')
        .count();
    let total = whole.len() + fraction.len();
    // Base-10000 groups, at most as many as a DBF number can need; longer
    // text (rare) goes through the same steps with a heap buffer.
    let mut groups = [0i16; 32];
    let mut heap = Vec::new();
    let needed = total / 4 + 2;
    let groups: &mut [i16] = if needed <= groups.len() {
        &mut groups[..needed]
    } else {
        heap.resize(needed, 0);
        &mut heap
    };
    let (count, weight) = if leading == total {
        (0, 0)
    } else {
        let point = whole.len() as i64 + exponent - leading as i64;
        let top = point - 1;
        let pad = (3 - top.rem_euclid(4)) as usize;
        let mut count = 0;
        let mut filled = pad;
        let mut group = 0i16;
        for digit in digits.skip(leading) {
            group = group * 10 + i16::from(digit);
            filled += 1;
            if filled == 4 {
                groups[count] = group;
                count += 1;
                group = 0;
                filled = 0;
            }
        }
        if filled > 0 {
            for _ in filled..4 {
                group *= 10;
            }
            groups[count] = group;
            count += 1;
        }
        while count > 0 && groups[count - 1] == 0 {
            count -= 1;
        }
        (count, top.div_euclid(4))
    };
    let sign: u16 = if negative && count > 0 { 0x4000 } else { 0 };
    out.put_i32(8 + 2 * count as i32);
    out.put_i16(count as i16);
    out.put_i16(weight as i16);
    out.put_u16(sign);
    out.put_i16(scale as i16);
    for group in &groups[..count] {
        out.put_i16(*group);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(text: &str) -> Vec<i16> {
        let mut out = BytesMut::new();
        put(&mut out, text);
        out[4..]
            .chunks(2)
            .map(|c| i16::from_be_bytes([c[0], c[1]]))
            .collect()
    }

    #[test]
    fn digits_weight_sign_and_scale() {
        // ndigits, weight, sign, dscale, digits...
        assert_eq!(
            fields("1429.48681360561"),
            [4, 0, 0, 11, 1429, 4868, 1360, 5610]
        );
        assert_eq!(
            fields("1.42948681360561E+03"),
            [4, 0, 0, 11, 1429, 4868, 1360, 5610]
        );
        assert_eq!(fields("000107"), [1, 0, 0, 0, 107]);
        assert_eq!(fields("1.10"), [2, 0, 0, 2, 1, 1000]);
        assert_eq!(fields("-12345.5"), [3, 1, 0x4000, 1, 1, 2345, 5000]);
        assert_eq!(fields("0.005"), [1, -1, 0, 3, 50]);
        assert_eq!(fields("5E-3"), [1, -1, 0, 3, 50]);
        assert_eq!(fields("0.00"), [0, 0, 0, 2]);
        assert_eq!(fields("10000"), [1, 1, 0, 0, 1]);
    }
}
