//! Money in whole picodollars (10⁻¹² US dollars): prices per token and costs, exact.
//!
//! Prices are written as decimals in two units — US cents per token in the price catalog, US
//! dollars per million tokens in the settings — and a binary float holds neither exactly
//! (0.000125 cents is not a double; converted to dollars per million it reads 1.2499999999999998).
//! Every price written with up to ten decimals of a cent is a whole number of picodollars, so
//! prices are converted once, from their decimal digits, and costs are sums of integers:
//! a metric adds them without drift, and dollars are computed once, when shown.

/// A count of picodollars.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Picos(pub u128);

/// Picodollars in one US cent.
pub const PER_CENT: u32 = 10;
/// Picodollars per token in one US dollar per million tokens.
pub const PER_USD_PER_MILLION: u32 = 6;

impl Picos {
    /// In US dollars, for the access log and the metrics' exposition.
    pub fn usd(self) -> f64 {
        self.0 as f64 / 1e12
    }
}

/// A price written as a decimal number of some unit, in picodollars, where one unit is
/// `10^scale` picodollars: exact for every digit the number was written with, the rest
/// rounded half up. `None` for a negative, infinite or NaN value, or one too large.
///
/// Works from the number's shortest decimal form (what Rust prints for a float, never in
/// exponent notation), which is the decimal the catalog or the settings wrote.
pub fn picos(value: f64, scale: u32) -> Option<u64> {
    if !value.is_finite() || value < 0.0 {
        return None;
    }
    let text = format!("{value}");
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let ten = |n: u32| 10u64.checked_pow(n);
    let mut out = int.parse::<u64>().ok()?.checked_mul(ten(scale)?)?;
    let digits = frac.as_bytes();
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    for (i, d) in digits.iter().take(scale as usize).enumerate() {
        let place = ten(scale - 1 - i as u32)?;
        out = out.checked_add(u64::from(d - b'0') * place)?;
    }
    if digits.get(scale as usize).is_some_and(|d| *d >= b'5') {
        out = out.checked_add(1)?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_prices_convert_exactly() {
        // gpt-5 in the catalog: 0.000125 and 0.001 cents per token ($1.25 and $10 per million).
        assert_eq!(picos(0.000125, PER_CENT), Some(1_250_000));
        assert_eq!(picos(0.001, PER_CENT), Some(10_000_000));
        assert_eq!(picos(1.25e-5, PER_CENT), Some(125_000));
        assert_eq!(picos(3e-7, PER_CENT), Some(3_000));
        assert_eq!(picos(0.2, PER_CENT), Some(2_000_000_000));
        // The settings: dollars per million tokens.
        assert_eq!(picos(1.25, PER_USD_PER_MILLION), Some(1_250_000));
        assert_eq!(picos(0.075, PER_USD_PER_MILLION), Some(75_000));
        assert_eq!(picos(0.0, PER_USD_PER_MILLION), Some(0));
        assert_eq!(picos(15.0, PER_USD_PER_MILLION), Some(15_000_000));
        // Past a picodollar: rounded half up.
        assert_eq!(picos(0.00000000004, PER_CENT), Some(0));
        assert_eq!(picos(0.00000000005, PER_CENT), Some(1));
        for bad in [-1.0, f64::NAN, f64::INFINITY, 1e30] {
            assert_eq!(picos(bad, PER_CENT), None, "{bad}");
        }
    }

    #[test]
    fn costs_show_as_exact_dollars() {
        // 1M input and 1M output tokens of gpt-5: $11.25, to the cent and beyond.
        let cost = Picos(1_000_000 * 1_250_000 + 1_000_000 * 10_000_000);
        assert_eq!(cost.usd(), 11.25);
        assert_eq!(Picos(1_250_000).usd(), 1.25e-6);
    }
}
