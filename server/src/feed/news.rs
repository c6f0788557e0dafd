//! The news generator: plausible headlines assembled from per-topic phrase lists.

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::pick;

/// The topics, in channel-index order (`news.<topic>`).
pub const TOPICS: &[&str] = &["markets", "tech", "world", "energy", "science", "sports"];

/// Per topic: who, what they did, and the context.
const PHRASES: [(&[&str], &[&str], &[&str]); 6] = [
    (
        &["Stocks", "Treasury yields", "The dollar", "Bank shares", "Small caps", "Futures"],
        &["edge higher", "slip", "rally", "retreat", "hold steady", "swing"],
        &[
            "ahead of the Fed decision",
            "after inflation data",
            "as earnings season opens",
            "in light trading",
        ],
    ),
    (
        &["Chipmakers", "A cloud provider", "A startup", "Smartphone makers", "Regulators"],
        &["unveil", "delay", "expand", "scrutinize", "bet big on"],
        &[
            "AI accelerators",
            "a new data center",
            "an open-source model",
            "satellite internet",
            "privacy rules",
        ],
    ),
    (
        &["Leaders", "Negotiators", "Voters", "Officials", "Aid groups"],
        &["meet over", "reach a deal on", "weigh", "push back on", "call for"],
        &["trade tariffs", "climate funding", "a ceasefire", "border policy", "election reform"],
    ),
    (
        &["Oil", "Natural gas", "Solar installations", "Grid operators", "Refiners"],
        &["climbs", "falls", "hits a record", "braces for", "warns of"],
        &["as OPEC meets", "on a cold snap", "amid supply worries", "after a storm", "on demand data"],
    ),
    (
        &["Astronomers", "Researchers", "A probe", "Biologists", "Physicists"],
        &["spot", "map", "decode", "measure", "confirm"],
        &["a distant exoplanet", "deep-sea microbes", "a new particle decay", "ancient climate shifts"],
    ),
    (
        &["The champions", "A rookie", "The home side", "Veterans", "The underdogs"],
        &["stun", "edge past", "fall to", "rout", "hold off"],
        &["their rivals in overtime", "the league leaders", "a late rally", "the defending champions"],
    ),
];

/// Generated headlines over [`TOPICS`].
#[derive(Debug)]
pub struct NewsFeed {
    rng: StdRng,
}

impl NewsFeed {
    /// Headlines drawn from `seed`.
    pub fn new(seed: u64) -> Self {
        Self { rng: StdRng::seed_from_u64(seed) }
    }

    /// Writes `{"topic":"markets","headline":"..."}` into `out` for a random topic and
    /// returns the topic's index.
    pub fn next(&mut self, out: &mut Vec<u8>) -> usize {
        let index = rand::Rng::random_range(&mut self.rng, 0..TOPICS.len());
        let (who, did, what) = PHRASES[index];
        let (who, did, what) =
            (pick(&mut self.rng, who), pick(&mut self.rng, did), pick(&mut self.rng, what));
        out.extend_from_slice(br#"{"topic":""#);
        out.extend_from_slice(TOPICS[index].as_bytes());
        // The phrases are plain ASCII without quotes or backslashes: nothing to escape.
        out.extend_from_slice(br#"","headline":""#);
        for (i, part) in [who, did, what].into_iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            out.extend_from_slice(part.as_bytes());
        }
        out.extend_from_slice(br#""}"#);
        index
    }
}
