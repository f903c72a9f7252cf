//! Buy-till-you-die models for non-contractual customers: BG/NBD (Fader, Hardie and Lee 2005) for
//! purchase counts and Gamma-Gamma (Fader, Hardie and Lee 2005b) for spend per purchase.
//!
//! Fits are maximum likelihood on grouped sufficient statistics (customers with the same
//! frequency, recency and age count once, weighted), with analytic gradients, in log space
//! (parameters are optimised as logarithms, so they stay positive; the likelihood is a log-sum-exp),
//! by BFGS. Standard errors come from the Hessian at the optimum. A fit that does not converge is an
//! error, never NaN parameters.

use crate::special::{digamma, ln_gamma, ln_hyp2f1, ln_hyp2f1_with_gradient, trigamma};

/// Why a model could not be fitted or used.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum FitError {
    /// Nothing to fit on.
    #[error("no customers to fit the {0} model on")]
    NoData(&'static str),
    /// A customer's summary is impossible (negative counts, recency beyond age, ...).
    #[error("customer {index}: {reason}")]
    BadCustomer { index: usize, reason: String },
    /// The optimiser stopped without meeting its tolerance.
    #[error(
        "the {model} fit did not converge after {iterations} iterations (gradient norm {gradient:.3e}); check the data's time unit and calibration period"
    )]
    NotConverged {
        model: &'static str,
        iterations: usize,
        gradient: f64,
    },
    /// A value could not be computed (a hypergeometric series that does not settle).
    #[error("{0}")]
    Numeric(String),
}

/// One customer's calibration summary: `x` repeat purchases, the last at `t_x` after the first,
/// observed for `t` since the first (all in one time unit); `monetary_value` is the mean spend per
/// repeat purchase (0 without repeats).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CustomerSummary {
    pub x: f64,
    pub t_x: f64,
    pub t: f64,
    pub monetary_value: f64,
}

/// A fitted model's parameters with standard errors and the log-likelihood at the optimum.
#[derive(Debug, Clone, PartialEq)]
pub struct Fit<P> {
    pub params: P,
    /// Standard errors, in the order of the parameters.
    pub std_errors: Vec<f64>,
    pub log_likelihood: f64,
    pub iterations: usize,
}

/// BG/NBD parameters: purchase rates ~ Gamma(r, alpha); dropout after each purchase ~ Beta(a, b).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BgNbd {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
}

/// Pareto/NBD parameters (Schmittlein, Morrison and Colombo 1987): purchase rates ~ Gamma(r, alpha),
/// lifetimes exponential with dropout rates ~ Gamma(s, beta).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParetoNbd {
    pub r: f64,
    pub alpha: f64,
    pub s: f64,
    pub beta: f64,
}

/// MBG/NBD parameters (Batislam, Denizel and Filiztekin 2007): as BG/NBD, but a customer may also
/// drop out at the first purchase, so that one-time buyers can be inactive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MbgNbd {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
}

/// Gamma-Gamma parameters: spend per purchase ~ Gamma(p, nu), nu ~ Gamma(q, gamma).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GammaGamma {
    pub p: f64,
    pub q: f64,
    pub gamma: f64,
}

/// Customers with equal (x, t_x, T), counted, in a fixed order (by those values).
fn group(data: &[CustomerSummary]) -> Vec<(CustomerSummary, f64)> {
    let key = |c: &CustomerSummary| [c.x.to_bits(), c.t_x.to_bits(), c.t.to_bits()];
    let mut sorted: Vec<([u64; 3], CustomerSummary)> = data.iter().map(|c| (key(c), *c)).collect();
    sorted.sort_unstable_by_key(|e| e.0);
    let mut groups: Vec<([u64; 3], CustomerSummary, f64)> = Vec::new();
    for (k, c) in sorted {
        match groups.last_mut() {
            Some((last, _, n)) if *last == k => *n += 1.0,
            _ => groups.push((k, c, 1.0)),
        }
    }
    groups.into_iter().map(|(_, c, n)| (c, n)).collect()
}

/// Groups of equal summaries, each with the index of its `x` among the distinct values of `x` and
/// of its `T` and `t_x` among the distinct ages, so that the special functions of `x` and the
/// logarithms of the ages are computed once per distinct value and iteration.
struct Grouped {
    groups: Vec<Group>,
    xs: Vec<f64>,
    ages: Vec<f64>,
}

/// One group: its indices into the distinct frequencies and ages, and how many customers share
/// it. Sixteen bytes, so that a pass over a million customers' groups stays in cache.
#[derive(Clone)]
struct Group {
    x: u32,
    t_x: u32,
    big_t: u32,
    count: u32,
}

fn distinct(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v.dedup();
    v
}

/// A multiply-shift hasher for the bits of f64 values: the distinct ages and frequencies are
/// looked up a few million times, where SipHash would cost more than the sort it saves.
#[derive(Default)]
struct BitsHasher(u64);

impl std::hash::Hasher for BitsHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (v ^ (v >> 29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 ^= self.0 >> 32;
    }
}

type BitsMap = std::collections::HashMap<u64, u32, std::hash::BuildHasherDefault<BitsHasher>>;

/// Distinct values of `values` in ascending order, and each value's rank among them.
fn ranks(values: impl Iterator<Item = f64>) -> (Vec<f64>, BitsMap) {
    let mut index = BitsMap::default();
    for v in values {
        let next = index.len() as u32;
        index.entry(v.to_bits()).or_insert(next);
    }
    let mut distinct: Vec<f64> = index.keys().map(|b| f64::from_bits(*b)).collect();
    distinct.sort_by(f64::total_cmp);
    for (rank, v) in distinct.iter().enumerate() {
        index.insert(v.to_bits(), rank as u32);
    }
    (distinct, index)
}

fn grouped(data: &[CustomerSummary]) -> Grouped {
    // Customers become one u64 each, (rank of x, rank of t_x, rank of T), sorted and counted:
    // much cheaper than sorting the summaries themselves. The groups come out in the same order
    // (by x, t_x, T), so the sums, and the fit, are the same.
    let (xs, x_rank) = ranks(data.iter().map(|c| c.x));
    let (ages, age_rank) = ranks(data.iter().flat_map(|c| [c.t_x, c.t]));
    if xs.len() < (1 << 20) && ages.len() < (1 << 22) {
        let rank = |m: &BitsMap, v: f64| u64::from(m.get(&v.to_bits()).copied().unwrap_or(0));
        let mut keys: Vec<u64> = data
            .iter()
            .map(|c| {
                (rank(&x_rank, c.x) << 44) | (rank(&age_rank, c.t_x) << 22) | rank(&age_rank, c.t)
            })
            .collect();
        keys.sort_unstable();
        let mut groups: Vec<Group> = Vec::new();
        let mut i = 0;
        while i < keys.len() {
            let k = keys[i];
            let mut j = i + 1;
            while j < keys.len() && keys[j] == k {
                j += 1;
            }
            let (x, t_x, big_t) = (
                (k >> 44) as u32,
                ((k >> 22) & 0x3f_ffff) as u32,
                (k & 0x3f_ffff) as u32,
            );
            groups.push(Group {
                x,
                t_x,
                big_t,
                count: u32::try_from(j - i).unwrap_or(u32::MAX),
            });
            i = j;
        }
        return Grouped { groups, xs, ages };
    }
    let groups = group(data);
    let xs = distinct(groups.iter().map(|(c, _)| c.x).collect());
    let ages = distinct(groups.iter().flat_map(|(c, _)| [c.t, c.t_x]).collect());
    let index = |v: &[f64], x: f64| v.partition_point(|y| *y < x) as u32;
    let groups = groups
        .into_iter()
        .map(|(c, weight)| Group {
            x: index(&xs, c.x),
            t_x: index(&ages, c.t_x),
            big_t: index(&ages, c.t),
            count: weight as u32,
        })
        .collect();
    Grouped { groups, xs, ages }
}

/// ln(alpha + age) and 1 / (alpha + age) of a customer's age T and recency t_x.
struct Ages {
    ln_t: f64,
    inv_t: f64,
    ln_tx: f64,
    inv_tx: f64,
}

/// Starting values for a fit on many customers: the fit on every 16th item (a fixed stride, so
/// the result never varies), or `default` when there are few items or that fit fails. The full
/// fit then starts next to its optimum and needs a few iterations instead of dozens; its result
/// does not depend on the start beyond the optimiser's tolerance.
fn warm_start<T: Clone, const N: usize>(
    items: &[T],
    default: [f64; N],
    fit: SubsampleFit<'_, T>,
) -> (Vec<f64>, Option<Vec<Vec<f64>>>) {
    if items.len() < 50_000 {
        return (default.to_vec(), None);
    }
    let sample: Vec<T> = items.iter().step_by(16).cloned().collect();
    match fit(&sample, &default) {
        Some(m) if m.params.iter().all(|v| v.is_finite() && *v > 0.0) => {
            // The sample's curvature is a sixteenth of the whole's: its inverse Hessian, scaled,
            // is the full fit's first estimate.
            let ratio = sample.len() as f64 / items.len() as f64;
            let h = (!m.inverse_hessian.is_empty()).then(|| {
                m.inverse_hessian
                    .iter()
                    .map(|r| r.iter().map(|v| v * ratio).collect())
                    .collect()
            });
            (m.params, h)
        }
        _ => (default.to_vec(), None),
    }
}

/// A fit of a subsample from starting values (see [`warm_start`]).
type SubsampleFit<'f, T> = &'f dyn Fn(&[T], &[f64]) -> Option<Maximum>;

/// The weighted sum of `f` over the groups, on up to the available cores.
fn sum_groups<const N: usize>(
    groups: &[Group],
    f: &(impl Fn(&Group) -> (f64, [f64; N]) + Sync),
) -> (f64, [f64; N]) {
    sum_slices(groups, &|group| {
        let (l, g) = f(group);
        let w = f64::from(group.count);
        (w * l, g.map(|v| w * v))
    })
}

/// The sum of `f` over `items`, on up to the available cores, added in a fixed order so that the
/// result does not depend on thread timing.
fn sum_slices<T: Sync, const N: usize>(
    items: &[T],
    f: &(impl Fn(&T) -> (f64, [f64; N]) + Sync),
) -> (f64, [f64; N]) {
    let part = |slice: &[T]| {
        let mut ll = 0.0;
        let mut g = [0.0; N];
        for item in slice {
            let (l, gi) = f(item);
            ll += l;
            for (acc, v) in g.iter_mut().zip(gi) {
                *acc += v;
            }
        }
        (ll, g)
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads <= 1 || items.len() < 20_000 {
        return part(items);
    }
    let chunk = items.len().div_ceil(threads);
    let parts: Vec<(f64, [f64; N])> = std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .skip(1)
            .map(|c| scope.spawn(move || part(c)))
            .collect();
        let mut parts = vec![part(&items[..chunk.min(items.len())])];
        for h in handles {
            // A panicking worker is a bug; its share counts as NaN, which the optimiser rejects.
            parts.push(h.join().unwrap_or((f64::NAN, [f64::NAN; N])));
        }
        parts
    });
    let mut total = (0.0, [0.0; N]);
    for (l, g) in parts {
        total.0 += l;
        for (acc, v) in total.1.iter_mut().zip(g) {
            *acc += v;
        }
    }
    total
}

fn check(data: &[CustomerSummary]) -> Result<(), FitError> {
    for (index, c) in data.iter().enumerate() {
        let bad = |reason: &str| FitError::BadCustomer {
            index,
            reason: reason.to_string(),
        };
        if !(c.x.is_finite()
            && c.t_x.is_finite()
            && c.t.is_finite()
            && c.monetary_value.is_finite())
        {
            return Err(bad("a value is not finite"));
        }
        if c.x < 0.0 || c.x.fract() != 0.0 {
            return Err(bad(
                "x must be a whole number of repeat purchases, not negative",
            ));
        }
        if c.t_x < 0.0 || c.t_x > c.t {
            return Err(bad("recency t_x must lie between 0 and the age T"));
        }
    }
    Ok(())
}

/// A purchase-count model of parameters (r, alpha, a, b) whose likelihood splits into functions
/// of a customer's frequency alone (computed once per distinct frequency) and the rest.
trait CountModel: Sized + Sync {
    const NAME: &'static str;
    type XTerms: Sync;
    type Constants: Sync;
    fn from_params(p: &[f64]) -> Self;
    fn x_terms(&self, x: f64) -> Self::XTerms;
    fn constants(&self) -> Self::Constants;
    fn alpha(&self) -> f64;
    fn ll_and_gradient(
        &self,
        x: f64,
        t: &Self::XTerms,
        k: &Self::Constants,
        ages: &Ages,
    ) -> (f64, [f64; 4]);
}

/// Fits a purchase-count model to calibration summaries by maximum likelihood.
fn fit_counts<M: CountModel>(data: &[CustomerSummary]) -> Result<Fit<M>, FitError> {
    if data.is_empty() {
        return Err(FitError::NoData(M::NAME));
    }
    check(data)?;
    let data = grouped(data);
    let log_likelihood = |groups: &[Group], p: &[f64]| {
        let m = M::from_params(p);
        let terms: Vec<M::XTerms> = data.xs.iter().map(|&x| m.x_terms(x)).collect();
        let k = m.constants();
        let alpha = m.alpha();
        let ages: Vec<(f64, f64)> = data
            .ages
            .iter()
            .map(|&age| ((alpha + age).ln(), 1.0 / (alpha + age)))
            .collect();
        let (ll, g) = sum_groups(groups, &|group| {
            let (ln_t, inv_t) = ages[group.big_t as usize];
            let (ln_tx, inv_tx) = ages[group.t_x as usize];
            let a = Ages {
                ln_t,
                inv_t,
                ln_tx,
                inv_tx,
            };
            let x = group.x as usize;
            m.ll_and_gradient(data.xs[x], &terms[x], &k, &a)
        });
        (ll, g.to_vec())
    };
    let (start, inverse_hessian) = warm_start(&data.groups, [1.0; 4], &|groups, p| {
        maximise(M::NAME, &|q: &[f64]| log_likelihood(groups, q), p).ok()
    });
    let total = |p: &[f64]| log_likelihood(&data.groups, p);
    let fit = maximise_from(M::NAME, &total, &start, inverse_hessian)?;
    Ok(Fit {
        params: M::from_params(&fit.params),
        std_errors: fit.std_errors,
        log_likelihood: fit.log_likelihood,
        iterations: fit.iterations,
    })
}

impl CountModel for BgNbd {
    const NAME: &'static str = "BG/NBD";
    type XTerms = [f64; 8];
    type Constants = [f64; 9];

    fn from_params(p: &[f64]) -> Self {
        Self {
            r: p[0],
            alpha: p[1],
            a: p[2],
            b: p[3],
        }
    }

    fn alpha(&self) -> f64 {
        self.alpha
    }

    /// The functions of one distinct x: ln Γ and ψ of r+x, b+x and a+b+x, ln(b+x-1) and its
    /// reciprocal.
    fn x_terms(&self, x: f64) -> [f64; 8] {
        let Self { r, a, b, .. } = *self;
        [
            ln_gamma(r + x),
            digamma(r + x),
            ln_gamma(b + x),
            digamma(b + x),
            ln_gamma(a + b + x),
            digamma(a + b + x),
            if x > 0.0 { (b + x - 1.0).ln() } else { 0.0 },
            if x > 0.0 { 1.0 / (b + x - 1.0) } else { 0.0 },
        ]
    }

    /// The terms of x = 0 (ln Γ(r), ψ(r), ln Γ(b), ψ(b), ln Γ(a+b), ψ(a+b)), then ln alpha, ln a
    /// and 1/a.
    fn constants(&self) -> [f64; 9] {
        let z = self.x_terms(0.0);
        [
            z[0],
            z[1],
            z[2],
            z[3],
            z[4],
            z[5],
            self.alpha.ln(),
            self.a.ln(),
            1.0 / self.a,
        ]
    }

    /// The log-likelihood of one customer and its gradient in (r, alpha, a, b), given the terms of
    /// its x and the [`BgNbd::constants`].
    fn ll_and_gradient(&self, x: f64, t: &[f64; 8], k: &[f64; 9], ages: &Ages) -> (f64, [f64; 4]) {
        let Self { r, alpha, .. } = *self;
        let ln_alpha = k[6];
        let a1 = t[0] - k[0] + r * ln_alpha;
        let a2 = k[4] + t[2] - k[2] - t[4];
        let a3 = -(r + x) * ages.ln_t;
        let mut g = [
            t[1] - k[1] + ln_alpha,
            r / alpha,
            k[5] - t[5],
            k[5] + t[3] - k[3] - t[5],
        ];
        let g3 = [-ages.ln_t, -(r + x) * ages.inv_t, 0.0, 0.0];
        if x > 0.0 {
            let a4 = k[7] - t[6] - (r + x) * ages.ln_tx;
            let g4 = [-ages.ln_tx, -(r + x) * ages.inv_tx, k[8], -t[7]];
            // ln(e^a3 + e^a4) and the weights of the two terms, with one exponential.
            let (m, e) = if a3 >= a4 {
                (a3, (a4 - a3).exp())
            } else {
                (a4, (a3 - a4).exp())
            };
            let w_big = 1.0 / (1.0 + e);
            let w_small = e * w_big;
            let (w3, w4) = if a3 >= a4 {
                (w_big, w_small)
            } else {
                (w_small, w_big)
            };
            for i in 0..4 {
                g[i] += w3 * g3[i] + w4 * g4[i];
            }
            (a1 + a2 + m + e.ln_1p(), g)
        } else {
            for i in 0..4 {
                g[i] += g3[i];
            }
            (a1 + a2 + a3, g)
        }
    }
}

impl CountModel for MbgNbd {
    const NAME: &'static str = "MBG/NBD";
    type XTerms = [f64; 6];
    type Constants = [f64; 6];

    fn from_params(p: &[f64]) -> Self {
        Self {
            r: p[0],
            alpha: p[1],
            a: p[2],
            b: p[3],
        }
    }

    fn alpha(&self) -> f64 {
        self.alpha
    }

    /// The special functions of one distinct x: ln Γ and ψ of r+x, b+x+1 and a+b+x+1.
    fn x_terms(&self, x: f64) -> [f64; 6] {
        let Self { r, a, b, .. } = *self;
        [
            ln_gamma(r + x),
            digamma(r + x),
            ln_gamma(b + x + 1.0),
            digamma(b + x + 1.0),
            ln_gamma(a + b + x + 1.0),
            digamma(a + b + x + 1.0),
        ]
    }

    /// The log-likelihood of one customer and its gradient in (r, alpha, a, b), given the terms of
    /// its x and the constants ln Γ(r), ψ(r), ln Γ(b), ψ(b), ln Γ(a+b), ψ(a+b).
    fn ll_and_gradient(&self, x: f64, t: &[f64; 6], k: &[f64; 6], ages: &Ages) -> (f64, [f64; 4]) {
        let Self { r, alpha, a, b } = *self;
        let (ln_big_t, ln_tx) = (ages.ln_t, ages.ln_tx);
        let a1 = t[0] - k[0] + r * alpha.ln();
        let a2 = k[4] + t[2] - k[2] - t[4];
        let a3 = -(r + x) * ln_big_t;
        let a4 = a.ln() - (b + x).ln() + (r + x) * (ln_big_t - ln_tx);
        // ln(1 + e^a4), and its derivative e^a4 / (1 + e^a4), computed without overflow.
        let (softplus, sigma) = if a4 > 0.0 {
            (a4 + (-a4).exp().ln_1p(), 1.0 / (1.0 + (-a4).exp()))
        } else {
            (a4.exp().ln_1p(), a4.exp() / (1.0 + a4.exp()))
        };
        let g = [
            t[1] - k[1] + alpha.ln() - ln_big_t + sigma * (ln_big_t - ln_tx),
            r / alpha - (r + x) * ages.inv_t + sigma * (r + x) * (ages.inv_t - ages.inv_tx),
            k[5] - t[5] + sigma / a,
            k[5] + t[3] - k[3] - t[5] - sigma / (b + x),
        ];
        (a1 + a2 + a3 + softplus, g)
    }

    /// ln Γ(r), ψ(r), ln Γ(b), ψ(b), ln Γ(a+b), ψ(a+b).
    fn constants(&self) -> [f64; 6] {
        let Self { r, a, b, .. } = *self;
        [
            ln_gamma(r),
            digamma(r),
            ln_gamma(b),
            digamma(b),
            ln_gamma(a + b),
            digamma(a + b),
        ]
    }
}

impl BgNbd {
    /// Fits BG/NBD to calibration summaries by maximum likelihood.
    pub fn fit(data: &[CustomerSummary]) -> Result<Fit<Self>, FitError> {
        fit_counts(data)
    }

    /// Expected purchases of a new customer in a period of length `t`.
    pub fn expected_purchases_new(&self, t: f64) -> Result<f64, FitError> {
        let Self { r, alpha, a, b } = *self;
        let z = t / (alpha + t);
        let h = ln_hyp2f1(r, b, a + b - 1.0, z).ok_or_else(|| hyp_error(r, b, a + b - 1.0, z))?;
        Ok((a + b - 1.0) / (a - 1.0) * (1.0 - (r * (alpha / (alpha + t)).ln() + h).exp()))
    }

    /// Expected purchases in the next `t` of a customer with summary `c`:
    /// [`BgNbd::expected_purchases_if_alive`] times [`BgNbd::p_alive`].
    pub fn conditional_expected_purchases(
        &self,
        c: &CustomerSummary,
        t: f64,
    ) -> Result<f64, FitError> {
        Ok(self.expected_purchases_if_alive(c.x, c.t, t)? * self.p_alive(c))
    }

    /// The part of [`BgNbd::conditional_expected_purchases`] that does not depend on the
    /// recency: the expected purchases in the next `t` of a customer with `x` repeat purchases
    /// and age `big_t` who is still active. Customers who share `x` and `big_t` share it, which
    /// is what lets [`crate::clv_scores`] compute its hypergeometric series once for all of them.
    pub fn expected_purchases_if_alive(&self, x: f64, big_t: f64, t: f64) -> Result<f64, FitError> {
        let Self { r, alpha, a, b } = *self;
        let z = t / (alpha + big_t + t);
        let (ha, hb, hc) = (r + x, b + x, a + b + x - 1.0);
        let h = ln_hyp2f1(ha, hb, hc, z).ok_or_else(|| hyp_error(ha, hb, hc, z))?;
        let ln_ratio = (r + x) * ((alpha + big_t) / (alpha + big_t + t)).ln();
        Ok((a + b + x - 1.0) / (a - 1.0) * (1.0 - (ln_ratio + h).exp()))
    }

    /// The probability that a customer with summary `c` is still active at the end of the calibration.
    pub fn p_alive(&self, c: &CustomerSummary) -> f64 {
        let Self { r, alpha, a, b } = *self;
        if c.x == 0.0 {
            return 1.0;
        }
        let ln_odds =
            a.ln() - (b + c.x - 1.0).ln() + (r + c.x) * ((alpha + c.t) / (alpha + c.t_x)).ln();
        1.0 / (1.0 + ln_odds.exp())
    }

    /// P(X(t) = n): the probability that a new customer makes `n` purchases in a period of length `t`.
    pub fn probability_of_purchases(&self, t: f64, n: u32) -> f64 {
        let Self { r, alpha, a, b } = *self;
        let n = f64::from(n);
        let ln_beta = |x: f64, y: f64| ln_gamma(x) + ln_gamma(y) - ln_gamma(x + y);
        let ln_first =
            ln_beta(a, b + n) - ln_beta(a, b) + ln_gamma(r + n) - ln_gamma(r) - ln_gamma(n + 1.0)
                + r * (alpha / (alpha + t)).ln()
                + n * (t / (alpha + t)).ln();
        let mut p = ln_first.exp();
        if n > 0.0 {
            let mut inner = 0.0;
            for j in 0..(n as u32) {
                let j = f64::from(j);
                inner += (ln_gamma(r + j) - ln_gamma(r) - ln_gamma(j + 1.0)
                    + j * (t / (alpha + t)).ln())
                .exp();
            }
            let ln_second = ln_beta(a + 1.0, b + n - 1.0) - ln_beta(a, b);
            p += ln_second.exp() * (1.0 - (r * (alpha / (alpha + t)).ln()).exp() * inner);
        }
        p
    }
}

impl MbgNbd {
    /// Fits MBG/NBD to calibration summaries by maximum likelihood.
    pub fn fit(data: &[CustomerSummary]) -> Result<Fit<Self>, FitError> {
        fit_counts(data)
    }

    /// The probability that a customer with summary `c` is still active at the end of the calibration.
    pub fn p_alive(&self, c: &CustomerSummary) -> f64 {
        let Self { r, alpha, a, b } = *self;
        let ln_odds = a.ln() - (b + c.x).ln() + (r + c.x) * ((alpha + c.t) / (alpha + c.t_x)).ln();
        1.0 / (1.0 + ln_odds.exp())
    }

    /// Expected purchases in the next `t` of a customer with summary `c`.
    pub fn conditional_expected_purchases(
        &self,
        c: &CustomerSummary,
        t: f64,
    ) -> Result<f64, FitError> {
        let Self { r, alpha, a, b } = *self;
        let (x, big_t) = (c.x, c.t);
        let z = t / (alpha + big_t + t);
        let (ha, hb, hc) = (r + x, b + x + 1.0, a + b + x);
        let h = ln_hyp2f1(ha, hb, hc, z).ok_or_else(|| hyp_error(ha, hb, hc, z))?;
        let ln_ratio = (r + x) * ((alpha + big_t) / (alpha + big_t + t)).ln();
        Ok((a + b + x) / (a - 1.0) * (1.0 - (ln_ratio + h).exp()) * self.p_alive(c))
    }
}

impl ParetoNbd {
    /// The log-likelihood of one customer (Fader and Hardie 2005, "A note on deriving the
    /// Pareto/NBD model"), with the hypergeometric terms in log space: the plain form the tests
    /// check [`ParetoNbd::ll_and_gradient`] against.
    #[cfg(test)]
    fn ll(&self, c: &CustomerSummary) -> Result<f64, FitError> {
        let Self { r, alpha, s, beta } = *self;
        let (x, t) = (c.x, c.t);
        let rsx = r + s + x;
        let ln_a0 = self.ln_a0(c)?;
        let first = -(r + x) * (alpha + t).ln() - s * (beta + t).ln();
        let second = (s / rsx).ln() + ln_a0;
        let m = first.max(second);
        let brace = m + ((first - m).exp() + (second - m).exp()).ln();
        Ok(ln_gamma(r + x) - ln_gamma(r) + r * alpha.ln() + s * beta.ln() + brace)
    }

    /// ln A0 of Fader and Hardie's note: ln(2F1(..; (big - small)/(big + t_x)) / (big + t_x)^(r+s+x)
    /// - 2F1(..; (big - small)/(big + T)) / (big + T)^(r+s+x)), -inf when t_x = T.
    fn ln_a0(&self, c: &CustomerSummary) -> Result<f64, FitError> {
        let Self { r, alpha, s, beta } = *self;
        let rsx = r + s + c.x;
        let (big, small, b_arg) = if alpha >= beta {
            (alpha, beta, s + 1.0)
        } else {
            (beta, alpha, r + c.x)
        };
        let term = |age: f64| -> Result<f64, FitError> {
            let den = big + age;
            let zz = (big - small) / den;
            let h = ln_hyp2f1(rsx, b_arg, rsx + 1.0, zz)
                .ok_or_else(|| hyp_error(rsx, b_arg, rsx + 1.0, zz))?;
            Ok(h - rsx * den.ln())
        };
        let (u, v) = (term(c.t_x)?, term(c.t)?);
        Ok(if u > v {
            u + (-(v - u).exp()).ln_1p()
        } else {
            f64::NEG_INFINITY
        })
    }

    /// The probability that a customer with summary `c` is still active at the end of the
    /// calibration: 1 / (1 + s / (r + s + x) (alpha + T)^(r + x) (beta + T)^s A0).
    pub fn p_alive(&self, c: &CustomerSummary) -> Result<f64, FitError> {
        let Self { r, alpha, s, beta } = *self;
        let ln_odds = (s / (r + s + c.x)).ln()
            + (r + c.x) * (alpha + c.t).ln()
            + s * (beta + c.t).ln()
            + self.ln_a0(c)?;
        Ok(1.0 / (1.0 + ln_odds.exp()))
    }

    /// Expected purchases in the next `t` of a customer with summary `c`: P(alive) (r + x)
    /// (beta + T) / ((alpha + T)(s - 1)) (1 - ((beta + T) / (beta + T + t))^(s - 1)), with the
    /// limit (beta + T) ln((beta + T + t) / (beta + T)) for s = 1.
    pub fn conditional_expected_purchases(
        &self,
        c: &CustomerSummary,
        t: f64,
    ) -> Result<f64, FitError> {
        let Self { r, alpha, s, beta } = *self;
        let ln_q = ((beta + c.t) / (beta + c.t + t)).ln();
        let horizon = if (s - 1.0).abs() < 1e-10 {
            -ln_q
        } else {
            -((s - 1.0) * ln_q).exp_m1() / (s - 1.0)
        };
        Ok(self.p_alive(c)? * (r + c.x) / (alpha + c.t) * (beta + c.t) * horizon)
    }

    /// Expected purchases of a new customer in a period of length `t`:
    /// r beta / (alpha (s - 1)) (1 - (beta / (beta + t))^(s - 1)).
    pub fn expected_purchases(&self, t: f64) -> f64 {
        let Self { r, alpha, s, beta } = *self;
        let ln_q = (beta / (beta + t)).ln();
        let horizon = if (s - 1.0).abs() < 1e-10 {
            -ln_q
        } else {
            -((s - 1.0) * ln_q).exp_m1() / (s - 1.0)
        };
        r * beta / alpha * horizon
    }

    /// The log-likelihood of one customer and its gradient in (r, alpha, s, beta), by the chain
    /// rule through the hypergeometric terms (their gradient comes with their series).
    fn ll_and_gradient(&self, c: &CustomerSummary) -> Result<(f64, [f64; 4]), FitError> {
        let Self { r, alpha, s, beta } = *self;
        let (x, big_t) = (c.x, c.t);
        let rsx = r + s + x;
        let alpha_big = alpha >= beta;
        let (big, small, b_arg) = if alpha_big {
            (alpha, beta, s + 1.0)
        } else {
            (beta, alpha, r + x)
        };
        // ln(2F1(rsx, b_arg; rsx + 1; z) / (big + age)^rsx) and its gradient.
        let term = |age: f64| -> Result<(f64, [f64; 4]), FitError> {
            let den = big + age;
            let z = (big - small) / den;
            let (h, [ha, hb, hc, hz]) = ln_hyp2f1_with_gradient(rsx, b_arg, rsx + 1.0, z)
                .ok_or_else(|| hyp_error(rsx, b_arg, rsx + 1.0, z))?;
            // dz/d(big) = (small + age) / den², dz/d(small) = -1 / den.
            let (dz_big, dz_small) = ((small + age) / (den * den), -1.0 / den);
            let (dz_alpha, dz_beta) = if alpha_big {
                (dz_big, dz_small)
            } else {
                (dz_small, dz_big)
            };
            let ln_den = den.ln();
            let g = [
                ha + hc + if alpha_big { 0.0 } else { hb } - ln_den,
                hz * dz_alpha - if alpha_big { rsx / den } else { 0.0 },
                ha + hc + if alpha_big { hb } else { 0.0 } - ln_den,
                hz * dz_beta - if alpha_big { 0.0 } else { rsx / den },
            ];
            Ok((h - rsx * ln_den, g))
        };
        let ((u, du), (v, dv)) = (term(c.t_x)?, term(big_t)?);
        // ln A0 = ln(e^u - e^v) = u + ln(1 - w), w = e^(v - u); d ln A0 = (du - w dv) / (1 - w).
        let (ln_a0, d_a0) = if u > v {
            let w = (v - u).exp();
            let mut d = [0.0; 4];
            for i in 0..4 {
                d[i] = (du[i] - w * dv[i]) / (1.0 - w);
            }
            (u + (-w).ln_1p(), d)
        } else {
            (f64::NEG_INFINITY, [0.0; 4])
        };
        let first = -(r + x) * (alpha + big_t).ln() - s * (beta + big_t).ln();
        let d_first = [
            -(alpha + big_t).ln(),
            -(r + x) / (alpha + big_t),
            -(beta + big_t).ln(),
            -s / (beta + big_t),
        ];
        let second = (s / rsx).ln() + ln_a0;
        let d_second = [
            -1.0 / rsx + d_a0[0],
            d_a0[1],
            1.0 / s - 1.0 / rsx + d_a0[2],
            d_a0[3],
        ];
        let m = first.max(second);
        let brace = m + ((first - m).exp() + (second - m).exp()).ln();
        let (p1, p2) = ((first - brace).exp(), (second - brace).exp());
        let ll = ln_gamma(r + x) - ln_gamma(r) + r * alpha.ln() + s * beta.ln() + brace;
        let mut g = [0.0; 4];
        for i in 0..4 {
            g[i] = p1 * d_first[i] + p2 * d_second[i];
        }
        g[0] += digamma(r + x) - digamma(r) + alpha.ln();
        g[1] += r / alpha;
        g[2] += beta.ln();
        g[3] += s / beta;
        Ok((ll, g))
    }

    /// Fits Pareto/NBD by maximum likelihood, with the analytic gradient of
    /// [`ParetoNbd::ll_and_gradient`] summed over groups of equal summaries.
    pub fn fit(data: &[CustomerSummary]) -> Result<Fit<Self>, FitError> {
        if data.is_empty() {
            return Err(FitError::NoData("Pareto/NBD"));
        }
        check(data)?;
        let groups = group(data);
        let of = |p: &[f64]| Self {
            r: p[0],
            alpha: p[1],
            s: p[2],
            beta: p[3],
        };
        let total = |p: &[f64]| {
            let m = of(p);
            let mut ll = 0.0;
            let mut g = vec![0.0; 4];
            for (c, w) in &groups {
                match m.ll_and_gradient(c) {
                    Ok((l, d)) => {
                        ll += w * l;
                        for i in 0..4 {
                            g[i] += w * d[i];
                        }
                    }
                    Err(_) => return (f64::NAN, vec![f64::NAN; 4]),
                }
            }
            (ll, g)
        };
        let fit = maximise("Pareto/NBD", &total, &[1.0, 1.0, 1.0, 1.0])?;
        Ok(Fit {
            params: of(&fit.params),
            std_errors: fit.std_errors,
            log_likelihood: fit.log_likelihood,
            iterations: fit.iterations,
        })
    }
}

impl GammaGamma {
    /// Fits Gamma-Gamma to the repeat buyers among `data` (customers without repeat purchases or with
    /// a monetary value of 0 carry no information about spend and are left out).
    ///
    /// The log-likelihood of a repeat buyer with x repeat purchases of mean value m is
    /// ln Γ(px+q) − ln Γ(px) − ln Γ(q) + q ln γ + (px−1) ln m + px ln x − (px+q) ln(xm+γ).
    /// Everything but the last term is a function of x (once per distinct x), or a constant of
    /// the customer summed once before the fit; so each evaluation costs one logarithm and one
    /// division per buyer.
    pub fn fit(data: &[CustomerSummary]) -> Result<Fit<Self>, FitError> {
        check(data)?;
        // One pass: per buyer x, x·m and the index of x among the distinct frequencies (in
        // order of appearance); per distinct x: buyers; summed once: Σ x ln m, Σ ln m.
        let mut x_index = BitsMap::default();
        let (mut xs, mut per_x): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
        let mut buyers: Vec<(f64, f64, u32)> = Vec::new();
        let (mut sum_x_ln_m, mut sum_ln_m) = (0.0f64, 0.0f64);
        for c in data.iter().filter(|c| c.x > 0.0 && c.monetary_value > 0.0) {
            let i = *x_index.entry(c.x.to_bits()).or_insert_with(|| {
                xs.push(c.x);
                per_x.push(0.0);
                (xs.len() - 1) as u32
            });
            per_x[i as usize] += 1.0;
            let ln_m = c.monetary_value.ln();
            sum_x_ln_m += c.x * ln_m;
            sum_ln_m += ln_m;
            buyers.push((c.x, c.x * c.monetary_value, i));
        }
        if xs.is_empty() {
            return Err(FitError::NoData("Gamma-Gamma"));
        }
        let x_ln_x =
            |counts: &[f64]| -> f64 { xs.iter().zip(counts).map(|(x, n)| n * x * x.ln()).sum() };
        let sum_a = sum_x_ln_m + x_ln_x(&per_x);
        let of = |v: &[f64]| Self {
            p: v[0],
            q: v[1],
            gamma: v[2],
        };
        // The log-likelihood, its gradient and its Hessian in (p, q, gamma). With L = ln(xm+γ)
        // and D = 1/(xm+γ) per buyer, the sums over buyers are of (px+q)L, xL, L, (px+q)D, xD, D
        // and (px+q)D²; the rest is per distinct x.
        let log_likelihood = |buyers: &[(f64, f64, u32)], per_x: &[f64], v: &[f64]| {
            let n = buyers.len() as f64;
            let Self { p, q, gamma } = of(v);
            let (_, [s_wl, s_xl, s_l, s_wd, s_xd, s_d, s_wdd]) =
                sum_slices(buyers, &|&(x, xm, _)| {
                    let d = 1.0 / (xm + gamma);
                    let l = (xm + gamma).ln();
                    let w = p * x + q;
                    (0.0, [w * l, x * l, l, w * d, x * d, d, w * d * d])
                });
            let (ln_gq, psi_q, tri_q) = (ln_gamma(q), digamma(q), trigamma(q));
            let ln_g = gamma.ln();
            let (mut ll, mut g) = (0.0, [0.0f64; 3]);
            let mut h = [[0.0f64; 3]; 3];
            for (&x, &count) in xs.iter().zip(per_x) {
                let px = p * x;
                let (psi_a, psi_b) = (digamma(px + q), digamma(px));
                let (tri_a, tri_b) = (trigamma(px + q), trigamma(px));
                ll += count * (ln_gamma(px + q) - ln_gamma(px));
                g[0] += count * x * (psi_a - psi_b);
                g[1] += count * psi_a;
                h[0][0] += count * x * x * (tri_a - tri_b);
                h[0][1] += count * x * tri_a;
                h[1][1] += count * tri_a;
            }
            ll += n * (q * ln_g - ln_gq) + p * sum_a - sum_ln_m - s_wl;
            g[0] += sum_a - s_xl;
            g[1] += n * (ln_g - psi_q) - s_l;
            g[2] = n * q / gamma - s_wd;
            h[1][1] -= n * tri_q;
            h[0][2] = -s_xd;
            h[1][2] = n / gamma - s_d;
            h[2][2] = -n * q / (gamma * gamma) + s_wdd;
            h[1][0] = h[0][1];
            h[2][0] = h[0][2];
            h[2][1] = h[1][2];
            (ll, g.to_vec(), h.iter().map(|r| r.to_vec()).collect())
        };
        // The subsample's per-x counts and constants are its own.
        let (start, _) = warm_start(&buyers, [1.0; 3], &|sample, p| {
            let mut counts = vec![0.0f64; xs.len()];
            let (mut a, mut lm) = (0.0, 0.0);
            for &(x, xm, i) in sample {
                counts[i as usize] += 1.0;
                let ln_m = (xm / x).ln();
                a += x * ln_m;
                lm += ln_m;
            }
            let a = a + x_ln_x(&counts);
            let ll = |v: &[f64]| {
                let (l, g, h) = log_likelihood(sample, &counts, v);
                // log_likelihood adds the full data's constants; swap in the sample's.
                let corr = v[0] * (a - sum_a) - (lm - sum_ln_m);
                let mut g = g;
                g[0] += a - sum_a;
                (l + corr, g, h)
            };
            maximise_newton("Gamma-Gamma", &ll, p).ok()
        });
        let total = |v: &[f64]| log_likelihood(&buyers, &per_x, v);
        let fit = maximise_newton("Gamma-Gamma", &total, &start)?;
        Ok(Fit {
            params: of(&fit.params),
            std_errors: fit.std_errors,
            log_likelihood: fit.log_likelihood,
            iterations: fit.iterations,
        })
    }

    /// Expected mean spend per purchase of a customer with `x` repeat purchases of mean value `m`.
    pub fn expected_spend(&self, x: f64, m: f64) -> f64 {
        let Self { p, q, gamma } = *self;
        if x <= 0.0 {
            return p * gamma / (q - 1.0);
        }
        let weight = (q - 1.0) / (p * x + q - 1.0);
        weight * p * gamma / (q - 1.0) + (1.0 - weight) * m
    }
}

fn hyp_error(a: f64, b: f64, c: f64, z: f64) -> FitError {
    FitError::Numeric(format!(
        "the hypergeometric series 2F1({a}, {b}; {c}; {z}) does not settle"
    ))
}

/// A log-likelihood and its gradient at the given parameters.
type LogLikelihood<'f> = &'f dyn Fn(&[f64]) -> (f64, Vec<f64>);

struct Maximum {
    params: Vec<f64>,
    std_errors: Vec<f64>,
    log_likelihood: f64,
    iterations: usize,
    /// BFGS's final inverse Hessian in log-parameters (empty for Newton's method).
    inverse_hessian: Vec<Vec<f64>>,
}

/// Maximises a log-likelihood over positive parameters by BFGS on their logarithms, with a
/// backtracking line search; then standard errors from the Hessian (central differences of the
/// analytic gradient) in the original parameters.
fn maximise(
    model: &'static str,
    ll: LogLikelihood<'_>,
    start: &[f64],
) -> Result<Maximum, FitError> {
    maximise_from(model, ll, start, None)
}

/// [`maximise`] from a known inverse Hessian (in log-parameters), such as a subsample fit's
/// (without one, the identity): started next to the optimum with the identity, the line search
/// would spend its evaluations halving a step of the gradient's raw size.
fn maximise_from(
    model: &'static str,
    ll: LogLikelihood<'_>,
    start: &[f64],
    inverse_hessian: Option<Vec<Vec<f64>>>,
) -> Result<Maximum, FitError> {
    let n = start.len();
    // Minimise f(θ) = -LL(exp θ); ∇f = -LL'(p) ∘ p.
    let eval = |theta: &[f64]| -> (f64, Vec<f64>) {
        let p: Vec<f64> = theta.iter().map(|t| t.exp()).collect();
        let (l, g) = ll(&p);
        (-l, g.iter().zip(&p).map(|(gi, pi)| -gi * pi).collect())
    };
    let mut theta: Vec<f64> = start.iter().map(|p| p.ln()).collect();
    let (mut f, mut g) = eval(&theta);
    let mut h_inv: Vec<Vec<f64>> = inverse_hessian
        .filter(|h| {
            h.len() == n
                && h.iter()
                    .all(|r| r.len() == n && r.iter().all(|v| v.is_finite()))
        })
        .unwrap_or_else(|| {
            (0..n)
                .map(|i| (0..n).map(|j| if i == j { 1.0 } else { 0.0 }).collect())
                .collect()
        });
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let mut iterations = 0;
    let converged = loop {
        if norm(&g) < 1e-8 * (1.0 + f.abs()) {
            break true;
        }
        if iterations >= 2000 {
            break false;
        }
        iterations += 1;
        let mut d: Vec<f64> = (0..n)
            .map(|i| -(0..n).map(|j| h_inv[i][j] * g[j]).sum::<f64>())
            .collect();
        let mut slope: f64 = d.iter().zip(&g).map(|(a, b)| a * b).sum();
        if slope >= 0.0 {
            // Not a descent direction: restart from steepest descent.
            for (i, row) in h_inv.iter_mut().enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = if i == j { 1.0 } else { 0.0 };
                }
            }
            d = g.iter().map(|x| -x).collect();
            slope = -g.iter().map(|x| x * x).sum::<f64>();
        }
        // Keep steps in log space moderate.
        let longest = d.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let mut step = if longest > 5.0 { 5.0 / longest } else { 1.0 };
        let (next_theta, next_f, next_g) = loop {
            let cand: Vec<f64> = theta.iter().zip(&d).map(|(t, di)| t + step * di).collect();
            let (fc, gc) = eval(&cand);
            if fc.is_finite() && gc.iter().all(|x| x.is_finite()) && fc <= f + 1e-4 * step * slope {
                break (cand, fc, gc);
            }
            step *= 0.5;
            if step < 1e-20 {
                return Err(FitError::NotConverged {
                    model,
                    iterations,
                    gradient: norm(&g),
                });
            }
        };
        let s: Vec<f64> = next_theta.iter().zip(&theta).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = next_g.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy: f64 = s.iter().zip(&y).map(|(a, b)| a * b).sum();
        if sy > 1e-12 {
            let hy: Vec<f64> = (0..n)
                .map(|i| (0..n).map(|j| h_inv[i][j] * y[j]).sum())
                .collect();
            let yhy: f64 = y.iter().zip(&hy).map(|(a, b)| a * b).sum();
            for i in 0..n {
                for j in 0..n {
                    h_inv[i][j] +=
                        (sy + yhy) * s[i] * s[j] / (sy * sy) - (hy[i] * s[j] + s[i] * hy[j]) / sy;
                }
            }
        }
        let small_change = (f - next_f).abs() < 1e-14 * (1.0 + f.abs());
        theta = next_theta;
        f = next_f;
        g = next_g;
        if small_change && norm(&g) < 1e-4 * (1.0 + f.abs()) {
            break true;
        }
    };
    if !converged {
        return Err(FitError::NotConverged {
            model,
            iterations,
            gradient: norm(&g),
        });
    }
    let params: Vec<f64> = theta.iter().map(|t| t.exp()).collect();
    let std_errors = standard_errors(ll, &params);
    Ok(Maximum {
        params,
        std_errors,
        inverse_hessian: h_inv,
        log_likelihood: -f,
        iterations,
    })
}

/// Square roots of the diagonal of the inverse observed information (the negative Hessian of the
/// log-likelihood), by central differences of the analytic gradient. NaN where it is not invertible.
/// A log-likelihood with its gradient and Hessian at the given parameters.
type LogLikelihoodHessian<'f> = &'f dyn Fn(&[f64]) -> (f64, Vec<f64>, Vec<Vec<f64>>);

/// Maximises a log-likelihood over positive parameters by Newton's method on their logarithms,
/// damped (Levenberg-Marquardt) until each step improves; standard errors from the analytic
/// Hessian at the optimum. For models whose Hessian is cheap (Gamma-Gamma), this converges in a
/// handful of evaluations where BFGS needs dozens.
fn maximise_newton(
    model: &'static str,
    ll: LogLikelihoodHessian<'_>,
    start: &[f64],
) -> Result<Maximum, FitError> {
    let n = start.len();
    // f(θ) = -LL(e^θ): ∇f = -g ∘ p, ∇²f = -(p_i p_j H_ij) - δ_ij g_i p_i.
    let eval = |theta: &[f64]| {
        let p: Vec<f64> = theta.iter().map(|t| t.exp()).collect();
        let (l, g, h) = ll(&p);
        let grad: Vec<f64> = (0..n).map(|i| -g[i] * p[i]).collect();
        let hess: Vec<Vec<f64>> = (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| -p[i] * p[j] * h[i][j] - if i == j { g[i] * p[i] } else { 0.0 })
                    .collect()
            })
            .collect();
        (-l, grad, hess, h)
    };
    let mut theta: Vec<f64> = start.iter().map(|p| p.ln()).collect();
    let (mut f, mut g, mut hess, mut h) = eval(&theta);
    if !f.is_finite() {
        return Err(FitError::Numeric(format!(
            "the {model} log-likelihood is not finite at the starting values"
        )));
    }
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let mut lambda = 1e-3;
    let mut iterations = 0;
    let converged = loop {
        if norm(&g) < 1e-8 * (1.0 + f.abs()) {
            break true;
        }
        if iterations >= 500 || lambda > 1e12 {
            break false;
        }
        iterations += 1;
        let flat: Vec<f64> = (0..n)
            .flat_map(|i| {
                let row = &hess[i];
                (0..n).map(move |j| row[j])
            })
            .enumerate()
            .map(|(k, v)| {
                if k / n == k % n {
                    v + lambda * (1.0 + v.abs())
                } else {
                    v
                }
            })
            .collect();
        let minus_g: Vec<f64> = g.iter().map(|v| -v).collect();
        let Some(step) = crate::linalg::solve_spd(&flat, &minus_g, n) else {
            lambda *= 10.0;
            continue;
        };
        let candidate: Vec<f64> = theta.iter().zip(&step).map(|(t, s)| t + s).collect();
        let (fc, gc, hc, hh) = eval(&candidate);
        if fc.is_finite() && fc <= f {
            let small = (f - fc).abs() < 1e-14 * (1.0 + f.abs());
            (theta, f, g, hess, h) = (candidate, fc, gc, hc, hh);
            lambda = (lambda / 10.0).max(1e-12);
            if small && norm(&g) < 1e-6 * (1.0 + f.abs()) {
                break true;
            }
        } else {
            lambda *= 10.0;
        }
    };
    let params: Vec<f64> = theta.iter().map(|t| t.exp()).collect();
    if !converged || params.iter().any(|p| !p.is_finite()) {
        return Err(FitError::NotConverged {
            model,
            iterations,
            gradient: norm(&g),
        });
    }
    let info: Vec<Vec<f64>> = h
        .iter()
        .map(|row| row.iter().map(|v| -v).collect())
        .collect();
    Ok(Maximum {
        std_errors: inverse_diagonal_sqrt(info),
        inverse_hessian: Vec::new(),
        params,
        log_likelihood: -f,
        iterations,
    })
}

fn standard_errors(ll: LogLikelihood<'_>, params: &[f64]) -> Vec<f64> {
    let n = params.len();
    let mut info = vec![vec![0.0; n]; n];
    for j in 0..n {
        let h = 1e-5 * params[j].max(1e-8);
        let mut up = params.to_vec();
        let mut down = params.to_vec();
        up[j] += h;
        down[j] -= h;
        let (_, gu) = ll(&up);
        let (_, gd) = ll(&down);
        for i in 0..n {
            info[i][j] = -(gu[i] - gd[i]) / (2.0 * h);
        }
    }
    inverse_diagonal_sqrt(info)
}

/// The square roots of the diagonal of the inverse of a symmetric matrix (standard errors from an
/// information matrix): symmetrised, then inverted by Gauss-Jordan with partial pivoting.
fn inverse_diagonal_sqrt(mut info: Vec<Vec<f64>>) -> Vec<f64> {
    let n = info.len();
    #[allow(clippy::needless_range_loop)]
    for i in 0..n {
        for j in 0..i {
            let m = 0.5 * (info[i][j] + info[j][i]);
            info[i][j] = m;
            info[j][i] = m;
        }
    }
    let mut aug: Vec<Vec<f64>> = info
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let mut r = row.clone();
            r.extend((0..n).map(|j| if i == j { 1.0 } else { 0.0 }));
            r
        })
        .collect();
    for col in 0..n {
        let Some(pivot) = (col..n).max_by(|&a, &b| aug[a][col].abs().total_cmp(&aug[b][col].abs()))
        else {
            return vec![f64::NAN; n];
        };
        if aug[pivot][col].abs() < 1e-300 {
            return vec![f64::NAN; n];
        }
        aug.swap(col, pivot);
        let p = aug[col][col];
        for v in aug[col].iter_mut() {
            *v /= p;
        }
        for row in 0..n {
            if row != col {
                let factor = aug[row][col];
                if factor != 0.0 {
                    let pivot_row = aug[col].clone();
                    for (v, pv) in aug[row].iter_mut().zip(pivot_row) {
                        *v -= factor * pv;
                    }
                }
            }
        }
    }
    (0..n).map(|i| aug[i][n + i].max(0.0).sqrt()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Gamma-Gamma fit by Newton's method with the analytic Hessian lands where BFGS with
    /// the gradient alone does, and its standard errors equal those of the numerical Hessian.
    #[test]
    fn gamma_gamma_newton_agrees_with_bfgs() -> Result<(), FitError> {
        let data: Vec<CustomerSummary> = (0..400)
            .map(|i| {
                let x = f64::from(1 + i % 7);
                let m = 10.0 + f64::from((i * 37) % 90) + 0.25 * x;
                CustomerSummary {
                    x,
                    t_x: 1.0,
                    t: 2.0,
                    monetary_value: m,
                }
            })
            .collect();
        let newton = GammaGamma::fit(&data)?;
        // The same likelihood maximised by BFGS from its gradient.
        let ll = |v: &[f64]| {
            let gg = GammaGamma {
                p: v[0],
                q: v[1],
                gamma: v[2],
            };
            let mut l = 0.0;
            let mut g = vec![0.0; 3];
            for c in &data {
                let (px, q, gamma) = (gg.p * c.x, gg.q, gg.gamma);
                let den = c.x * c.monetary_value + gamma;
                l += ln_gamma(px + q) - ln_gamma(px) - ln_gamma(q)
                    + q * gamma.ln()
                    + (px - 1.0) * c.monetary_value.ln()
                    + px * c.x.ln()
                    - (px + q) * den.ln();
                g[0] += c.x
                    * (digamma(px + q) - digamma(px) + c.monetary_value.ln() + c.x.ln() - den.ln());
                g[1] += digamma(px + q) - digamma(q) + gamma.ln() - den.ln();
                g[2] += q / gamma - (px + q) / den;
            }
            (l, g)
        };
        let bfgs = maximise("Gamma-Gamma", &ll, &[1.0, 1.0, 1.0])?;
        let n = newton.params;
        for (a, b) in [
            (n.p, bfgs.params[0]),
            (n.q, bfgs.params[1]),
            (n.gamma, bfgs.params[2]),
        ] {
            assert!((a / b - 1.0).abs() < 1e-6, "{a} {b}");
        }
        assert!((newton.log_likelihood - bfgs.log_likelihood).abs() < 1e-6);
        for (a, b) in newton.std_errors.iter().zip(&bfgs.std_errors) {
            assert!((a / b - 1.0).abs() < 1e-4, "{a} {b}");
        }
        Ok(())
    }

    /// The analytic Pareto/NBD gradient against central differences of the likelihood, with
    /// alpha above and below beta (the two expansions of the hypergeometric terms), for a
    /// one-time buyer, a heavy buyer and a lapsed one.
    #[test]
    fn pareto_nbd_gradient_matches_differences() {
        let customers = [
            CustomerSummary {
                x: 0.0,
                t_x: 0.0,
                t: 38.0,
                monetary_value: 0.0,
            },
            CustomerSummary {
                x: 26.0,
                t_x: 30.86,
                t: 31.0,
                monetary_value: 0.0,
            },
            CustomerSummary {
                x: 3.0,
                t_x: 2.0,
                t: 38.0,
                monetary_value: 0.0,
            },
        ];
        for params in [[0.553, 10.578, 0.606, 11.669], [0.8, 12.0, 1.3, 4.0]] {
            let of = |p: &[f64; 4]| ParetoNbd {
                r: p[0],
                alpha: p[1],
                s: p[2],
                beta: p[3],
            };
            for c in &customers {
                let Ok((ll, g)) = of(&params).ll_and_gradient(c) else {
                    unreachable!()
                };
                let plain = of(&params).ll(c).unwrap_or(f64::NAN);
                assert!((ll - plain).abs() < 1e-10, "{ll} {plain}");
                for i in 0..4 {
                    let h = 1e-6 * params[i];
                    let (mut up, mut down) = (params, params);
                    up[i] += h;
                    down[i] -= h;
                    let num = (of(&up).ll(c).unwrap_or(f64::NAN)
                        - of(&down).ll(c).unwrap_or(f64::NAN))
                        / (2.0 * h);
                    assert!(
                        (g[i] - num).abs() < 1e-5 * num.abs().max(1.0),
                        "{params:?} {c:?} d{i}: {} vs {num}",
                        g[i]
                    );
                }
            }
        }
    }
}
