//! L2-regularised logistic regression fitted by Newton's method on a standardised matrix.
//!
//! Minimises the sum of log losses plus `l2 / 2` times the squared coefficients (the intercept is
//! not penalised), which is scikit-learn's `LogisticRegression(C = 1 / l2)` objective. Each Newton
//! step solves the penalised Hessian system by Cholesky decomposition; a step that does not lower
//! the objective is halved. Deterministic: no randomness, rows summed in order.

use serde::{Deserialize, Serialize};

use crate::linalg::solve_spd;
use crate::rfm::{Error, Result};

/// A fitted logistic regression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Logistic {
    /// The intercept (log-odds when every standardised feature is 0).
    pub intercept: f64,
    /// One coefficient per matrix column.
    pub coefficients: Vec<f64>,
    /// The L2 penalty it was fitted with.
    pub l2: f64,
    /// Newton iterations used.
    pub iterations: usize,
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// log(1 + e^z) without overflow.
fn softplus(z: f64) -> f64 {
    if z > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    }
}

impl Logistic {
    /// Fits on `columns` (each one value per row) and 0/1 `labels`.
    pub fn fit(columns: &[Vec<f64>], labels: &[f64], l2: f64) -> Result<Self> {
        let n = labels.len();
        let p = columns.len();
        if columns.iter().any(|c| c.len() != n) {
            return Err(Error::Internal(
                "logistic regression: columns and labels differ in length".into(),
            ));
        }
        if !(l2 > 0.0 && l2.is_finite()) {
            return Err(Error::BadInput(format!(
                "logistic regression needs a positive L2 penalty, not {l2}"
            )));
        }
        let positives = labels.iter().filter(|&&y| y == 1.0).count();
        if positives == 0 || positives == n {
            return Err(Error::BadInput(format!(
                "logistic regression needs both outcomes among the training rows ({positives} of {n} positive)"
            )));
        }
        let dim = p + 1;
        let mut beta = vec![0.0; dim];
        beta[0] = (positives as f64 / (n - positives) as f64).ln();
        let row = |i: usize, beta: &[f64]| {
            let mut z = beta[0];
            for (j, c) in columns.iter().enumerate() {
                z += beta[j + 1] * c[i];
            }
            z
        };
        let objective = |beta: &[f64]| {
            let mut loss = 0.0;
            for (i, &y) in labels.iter().enumerate() {
                let z = row(i, beta);
                loss += softplus(z) - y * z;
            }
            loss + 0.5 * l2 * beta[1..].iter().map(|b| b * b).sum::<f64>()
        };
        let mut current = objective(&beta);
        let mut iterations = 0;
        let mut x = vec![0.0; dim];
        for iteration in 1..=100 {
            iterations = iteration;
            let mut grad = vec![0.0; dim];
            let mut hess = vec![0.0; dim * dim];
            for (i, &y) in labels.iter().enumerate() {
                x[0] = 1.0;
                for (j, c) in columns.iter().enumerate() {
                    x[j + 1] = c[i];
                }
                let z: f64 = x.iter().zip(&beta).map(|(a, b)| a * b).sum();
                let prob = sigmoid(z);
                let w = prob * (1.0 - prob);
                let r = y - prob;
                for a in 0..dim {
                    grad[a] += x[a] * r;
                    let wa = w * x[a];
                    if wa != 0.0 {
                        for b in 0..=a {
                            hess[a * dim + b] += wa * x[b];
                        }
                    }
                }
            }
            for a in 0..dim {
                for b in 0..a {
                    hess[b * dim + a] = hess[a * dim + b];
                }
            }
            for a in 1..dim {
                grad[a] -= l2 * beta[a];
                hess[a * dim + a] += l2;
            }
            hess[0] += 1e-9;
            let step = solve_spd(&hess, &grad, dim).ok_or_else(|| {
                Error::BadInput(
                    "logistic regression: the Hessian is not positive definite (a constant or duplicated feature?)".into(),
                )
            })?;
            let mut scale = 1.0;
            let mut accepted = false;
            for _ in 0..30 {
                let candidate: Vec<f64> =
                    beta.iter().zip(&step).map(|(b, s)| b + scale * s).collect();
                let value = objective(&candidate);
                if value.is_finite() && value <= current + 1e-12 * current.abs() {
                    beta = candidate;
                    let improvement = current - value;
                    current = value;
                    accepted = true;
                    let largest = step.iter().fold(0.0f64, |m, s| m.max((scale * s).abs()));
                    if largest < 1e-8 || improvement < 1e-10 * current.abs().max(1.0) {
                        return Ok(Self::done(beta, l2, iterations));
                    }
                    break;
                }
                scale /= 2.0;
            }
            if !accepted {
                return Ok(Self::done(beta, l2, iterations));
            }
        }
        Err(Error::BadInput(format!(
            "logistic regression did not converge in {iterations} Newton steps"
        )))
    }

    fn done(beta: Vec<f64>, l2: f64, iterations: usize) -> Self {
        Self {
            intercept: beta[0],
            coefficients: beta[1..].to_vec(),
            l2,
            iterations,
        }
    }

    /// The probability of the positive outcome for each row of `columns`.
    pub fn predict(&self, columns: &[Vec<f64>]) -> Result<Vec<f64>> {
        if columns.len() != self.coefficients.len() {
            return Err(Error::BadInput(format!(
                "the model has {} coefficients but the rows have {} columns",
                self.coefficients.len(),
                columns.len()
            )));
        }
        let n = columns.first().map_or(0, Vec::len);
        Ok((0..n)
            .map(|i| {
                let z = self.intercept
                    + columns
                        .iter()
                        .zip(&self.coefficients)
                        .map(|(c, b)| b * c[i])
                        .sum::<f64>();
                sigmoid(z)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_separable_feature_gets_a_large_coefficient_and_the_penalty_keeps_it_finite() -> Result<()>
    {
        let x: Vec<f64> = (0..200).map(|i| f64::from(i) / 100.0 - 1.0).collect();
        let y: Vec<f64> = x.iter().map(|&v| if v > 0.0 { 1.0 } else { 0.0 }).collect();
        let m = Logistic::fit(std::slice::from_ref(&x), &y, 1.0)?;
        assert!(m.coefficients[0] > 5.0 && m.coefficients[0].is_finite());
        let p = m.predict(&[x])?;
        assert!(p[0] < 0.1 && p[199] > 0.9);
        Ok(())
    }

    /// Checked against scikit-learn 1.9.1: `LogisticRegression(C=1.0, tol=1e-12).fit(X, y)` on the
    /// same eight rows gives intercept -0.0015951 and coefficients 1.1368867, -0.1415437.
    #[test]
    fn matches_scikit_learn_on_a_small_problem() -> Result<()> {
        let a = vec![0.5, -1.2, 0.3, 1.8, -0.7, 0.9, -1.5, 0.1];
        let b = vec![1.0, 0.2, -0.4, 0.6, 1.1, -1.3, 0.8, -0.2];
        let y = vec![1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0];
        let m = Logistic::fit(&[a, b], &y, 1.0)?;
        assert!((m.intercept - -0.001_595_06).abs() < 1e-6, "{m:?}");
        assert!((m.coefficients[0] - 1.136_886_71).abs() < 1e-6, "{m:?}");
        assert!((m.coefficients[1] - -0.141_543_66).abs() < 1e-6, "{m:?}");
        Ok(())
    }

    #[test]
    fn one_outcome_only_is_an_error() {
        let e = Logistic::fit(&[vec![1.0, 2.0]], &[1.0, 1.0], 1.0);
        assert!(e.is_err_and(|e| e.to_string().contains("both outcomes")));
    }
}
