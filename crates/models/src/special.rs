//! Special functions the buy-till-you-die models need: log-gamma (from libm), digamma, and the
//! Gaussian hypergeometric function 2F1 for |z| < 1, summed in log space so that it stays finite
//! where the terms are huge (heavy buyers).

/// ln Γ(x) for x > 0.
pub(crate) fn ln_gamma(x: f64) -> f64 {
    libm::lgamma(x)
}

/// ψ(x) = d/dx ln Γ(x), for x > 0: recurrence up to x ≥ 10, then the asymptotic series.
pub(crate) fn digamma(mut x: f64) -> f64 {
    let mut result = 0.0;
    while x < 10.0 {
        result -= 1.0 / x;
        x += 1.0;
    }
    let inv = 1.0 / x;
    let inv2 = inv * inv;
    result + x.ln()
        - 0.5 * inv
        - inv2
            * (1.0 / 12.0
                - inv2 * (1.0 / 120.0 - inv2 * (1.0 / 252.0 - inv2 * (1.0 / 240.0 - inv2 / 132.0))))
}

/// ln 2F1(a, b; c; z) for a, b, c > 0 and 0 ≤ z < 1, by its power series (all terms positive),
/// accumulated relative to the largest term. `None` if the series does not settle.
pub(crate) fn ln_hyp2f1(a: f64, b: f64, c: f64, z: f64) -> Option<f64> {
    if !(0.0..1.0).contains(&z) || a <= 0.0 || b <= 0.0 || c <= 0.0 {
        return None;
    }
    if z == 0.0 {
        return Some(0.0);
    }
    let ln_z = z.ln();
    // ln of the current term, and the sum as exp(ln_scale) * sum.
    let (mut ln_term, mut ln_scale, mut sum) = (0.0f64, 0.0f64, 1.0f64);
    for n in 0..1_000_000u32 {
        let n = f64::from(n);
        let ln_ratio = ((a + n) * (b + n) / ((c + n) * (n + 1.0))).ln() + ln_z;
        ln_term += ln_ratio;
        if ln_term > ln_scale {
            sum = sum * (ln_scale - ln_term).exp() + 1.0;
            ln_scale = ln_term;
        } else {
            let t = (ln_term - ln_scale).exp();
            sum += t;
            // Terms shrink geometrically once n is past the peak: stop when negligible.
            if t < 1e-17 * sum && ln_ratio < 0.0 {
                return Some(ln_scale + sum.ln());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digamma_known_values() {
        // ψ(1) = -γ, ψ(0.5) = -γ - 2 ln 2, ψ(10) = 2.251752589066721.
        let euler = 0.577_215_664_901_532_9;
        assert!((digamma(1.0) + euler).abs() < 1e-12);
        assert!((digamma(0.5) + euler + 2.0 * 2f64.ln()).abs() < 1e-12);
        assert!((digamma(10.0) - 2.251_752_589_066_721).abs() < 1e-12);
    }

    #[test]
    fn hypergeometric_known_values() {
        // 2F1(1, 1; 2; z) = -ln(1 - z) / z.
        for z in [0.1f64, 0.5, 0.9, 0.999] {
            let exact = -(1.0 - z).ln() / z;
            let got = ln_hyp2f1(1.0, 1.0, 2.0, z).map(f64::exp);
            assert!(
                got.is_some_and(|g| (g / exact - 1.0).abs() < 1e-10),
                "{z}: {got:?}"
            );
        }
        // Huge terms stay finite in log space: 2F1(300, 300; 10; 0.9).
        assert!(ln_hyp2f1(300.0, 300.0, 10.0, 0.9).is_some_and(f64::is_finite));
    }
}
