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

/// The trigamma function ψ'(x) for x > 0: the recurrence ψ'(x) = ψ'(x+1) + 1/x² up to 20, then
/// the asymptotic series (its first omitted term is below 4e-16 there).
pub(crate) fn trigamma(mut x: f64) -> f64 {
    let mut result = 0.0;
    while x < 20.0 {
        result += 1.0 / (x * x);
        x += 1.0;
    }
    let inv = 1.0 / x;
    let inv2 = inv * inv;
    result
        + inv
        + 0.5 * inv2
        + inv * inv2 * (1.0 / 6.0 - inv2 * (1.0 / 30.0 - inv2 * (1.0 / 42.0 - inv2 / 30.0)))
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

/// ln 2F1(a, b; c; z) with its gradient in (a, b, c, z), for the same arguments as
/// [`ln_hyp2f1`]. Term n of the series is T_n = prod_{k<n} (a+k)(b+k) / ((c+k)(k+1)) z^n, so
/// d ln T_n / da = sum_{k<n} 1/(a+k) (likewise b), d ln T_n / dc = -sum_{k<n} 1/(c+k) and
/// d ln T_n / dz = n / z; the gradient of ln 2F1 is the T-weighted mean of these, accumulated in
/// the same scaled sums as the value.
pub(crate) fn ln_hyp2f1_with_gradient(a: f64, b: f64, c: f64, z: f64) -> Option<(f64, [f64; 4])> {
    if !(0.0..1.0).contains(&z) || a <= 0.0 || b <= 0.0 || c <= 0.0 {
        return None;
    }
    if z == 0.0 {
        return Some((0.0, [0.0, 0.0, 0.0, a * b / c]));
    }
    let ln_z = z.ln();
    let (mut ln_term, mut ln_scale, mut sum) = (0.0f64, 0.0f64, 1.0f64);
    let mut weighted = [0.0f64; 4];
    let mut d = [0.0f64; 4];
    for n in 0..1_000_000u32 {
        let n = f64::from(n);
        let ln_ratio = ((a + n) * (b + n) / ((c + n) * (n + 1.0))).ln() + ln_z;
        d[0] += 1.0 / (a + n);
        d[1] += 1.0 / (b + n);
        d[2] -= 1.0 / (c + n);
        d[3] = (n + 1.0) / z;
        ln_term += ln_ratio;
        if ln_term > ln_scale {
            let f = (ln_scale - ln_term).exp();
            sum = sum * f + 1.0;
            for (w, di) in weighted.iter_mut().zip(&d) {
                *w = *w * f + di;
            }
            ln_scale = ln_term;
        } else {
            let t = (ln_term - ln_scale).exp();
            sum += t;
            for (w, di) in weighted.iter_mut().zip(&d) {
                *w += t * di;
            }
            let largest = d.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            if t * largest < 1e-17 * sum && ln_ratio < 0.0 {
                return Some((ln_scale + sum.ln(), weighted.map(|w| w / sum)));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigamma_known_values() {
        // ψ'(1) = π²/6, ψ'(0.5) = π²/2, ψ'(10) = 0.10516633568168576 (scipy.special.polygamma).
        let pi2 = std::f64::consts::PI * std::f64::consts::PI;
        assert!((trigamma(1.0) - pi2 / 6.0).abs() < 1e-12);
        assert!((trigamma(0.5) - pi2 / 2.0).abs() < 1e-12);
        assert!((trigamma(10.0) - 0.105_166_335_681_685_76).abs() < 1e-15);
    }

    #[test]
    fn digamma_known_values() {
        // ψ(1) = -γ, ψ(0.5) = -γ - 2 ln 2, ψ(10) = 2.251752589066721.
        let euler = 0.577_215_664_901_532_9;
        assert!((digamma(1.0) + euler).abs() < 1e-12);
        assert!((digamma(0.5) + euler + 2.0 * 2f64.ln()).abs() < 1e-12);
        assert!((digamma(10.0) - 2.251_752_589_066_721).abs() < 1e-12);
    }

    #[test]
    fn the_hypergeometric_gradient_matches_differences() {
        for (a, b, c, z) in [
            (1.5, 1.6, 2.5, 0.3),
            (27.2, 1.6, 28.2, 0.05),
            (30.0, 30.0, 10.0, 0.9),
        ] {
            let Some((v, g)) = ln_hyp2f1_with_gradient(a, b, c, z) else {
                unreachable!("{a} {b} {c} {z}")
            };
            let plain = ln_hyp2f1(a, b, c, z).unwrap_or(f64::NAN);
            assert!((v - plain).abs() < 1e-12 * plain.abs().max(1.0));
            let args = [a, b, c, z];
            for i in 0..4 {
                let h = 1e-6 * args[i];
                let (mut up, mut down) = (args, args);
                up[i] += h;
                down[i] -= h;
                let num = (ln_hyp2f1(up[0], up[1], up[2], up[3]).unwrap_or(f64::NAN)
                    - ln_hyp2f1(down[0], down[1], down[2], down[3]).unwrap_or(f64::NAN))
                    / (2.0 * h);
                assert!(
                    (g[i] - num).abs() < 1e-6 * num.abs().max(1.0),
                    "d/d{i} at {args:?}: {} vs {num}",
                    g[i]
                );
            }
        }
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
