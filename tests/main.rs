//! rapport-e2e's tests, one binary: flows across crates (`e2e`: the demo, the browser
//! walk-through) and the reference connectors through the real host (`connectors`).

mod connectors;
mod e2e;
mod tidy;
