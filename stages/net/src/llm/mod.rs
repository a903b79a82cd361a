//! LLMs in the loop: `generate` (responses from one or more teachers) and
//! `judge` (rubric scores), over any OpenAI-compatible chat-completions
//! endpoint. Both route records to teachers by a seeded hash (`teachers`),
//! send through a pool of workers under rate limits with retries
//! (`runner`, `client`, `ratelimit`), and keep every answer in the stage's
//! memo as it arrives, so a re-run, an append or a killed run pays only for
//! requests never answered.

mod client;
#[cfg(test)]
mod fake;
mod generate;
mod judge;
mod prompt;
pub(crate) mod ratelimit;
mod runner;
mod teachers;

#[cfg(test)]
mod testing;

pub use generate::Generate;
pub use generate::Params as GenerateParams;
pub use judge::Judge;
pub use judge::Params as JudgeParams;
