//! The ticker generator: random-walk prices, in cents so the JSON never shows float noise.

use std::collections::HashSet;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::write_cents;

/// Well-known symbols first, so the demo page and a casual `ticker.AAPL` subscription work.
const REAL: &[&str] = &[
    "AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "BRK.B", "AVGO", "JPM", "LLY", "V", "UNH",
    "XOM", "MA", "JNJ", "PG", "HD", "COST", "ABBV", "MRK", "CVX", "KO", "PEP", "ADBE", "CRM", "WMT", "BAC",
    "NFLX", "AMD", "TMO", "MCD", "CSCO", "ACN", "ABT", "LIN", "ORCL", "DIS", "INTC", "WFC", "QCOM", "TXN",
    "DHR", "PM", "VZ", "IBM", "CAT", "AMGN", "INTU", "GE", "NKE", "UBER", "SBUX", "BA", "GS", "MS", "PYPL",
    "SHOP", "SNOW", "PLTR",
];

/// Fixed, so generated symbol names are the same on every run whatever the feed's seed:
/// clients can subscribe to them by name.
const SYMBOL_SEED: u64 = 0x7469_636b_6361_7374;

/// `n` distinct ticker symbols: the real ones above, then generated 3–4 letter ones.
/// Deterministic.
pub fn ticker_symbols(n: usize) -> Vec<String> {
    let mut out: Vec<String> = REAL.iter().take(n).map(|s| (*s).to_owned()).collect();
    let mut seen: HashSet<String> = out.iter().cloned().collect();
    let mut rng = StdRng::seed_from_u64(SYMBOL_SEED);
    // 26^3 + 26^4 = 474,552 names for at most MAX_SYMBOLS (100,000): collisions stay rare,
    // so this loop ends after a little more than `n` draws.
    while out.len() < n {
        let len = rng.random_range(3..=4);
        let name: String = (0..len).map(|_| char::from(b'A' + rng.random_range(0..26u8))).collect();
        if seen.insert(name.clone()) {
            out.push(name);
        }
    }
    out
}

/// Random-walk prices over a set of symbols.
#[derive(Debug)]
pub struct TickerFeed {
    symbols: Vec<String>,
    /// Current price of each symbol, in cents (>= 1).
    prices: Vec<i64>,
    rng: StdRng,
}

impl TickerFeed {
    /// `symbols` symbols with starting prices drawn from `seed`.
    pub fn new(symbols: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let symbols = ticker_symbols(symbols);
        let prices = symbols.iter().map(|_| rng.random_range(500..=50_000)).collect();
        Self { symbols, prices, rng }
    }

    /// The symbols, in channel-index order.
    pub fn symbols(&self) -> &[String] {
        &self.symbols
    }

    /// Moves one random symbol's price by up to ±0.3 % (at least a cent, never below one
    /// cent), writes `{"symbol":"AAPL","price":187.23,"change":-0.12}` into `out` and
    /// returns the symbol's index.
    pub fn next(&mut self, out: &mut Vec<u8>) -> usize {
        let index = self.rng.random_range(0..self.symbols.len());
        let price = self.prices[index];
        let step = (price * 3 / 1000).max(1);
        let new_price = (price + self.rng.random_range(-step..=step)).max(1);
        self.prices[index] = new_price;
        out.extend_from_slice(br#"{"symbol":""#);
        // Symbols are [A-Z.]: nothing to escape.
        out.extend_from_slice(self.symbols[index].as_bytes());
        out.extend_from_slice(br#"","price":"#);
        write_cents(out, new_price);
        out.extend_from_slice(br#","change":"#);
        write_cents(out, new_price - price);
        out.push(b'}');
        index
    }
}
