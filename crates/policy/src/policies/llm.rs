//! What the language-model policies (`llm-token-limit`, `llm-emit-token-metric` and their
//! `azure-openai-` twins) share: reading the token usage a model's answer reports, estimating
//! the tokens of a prompt, and the work left for when the answer is known.
//!
//! Usage is read from the response body the way OpenAI-compatible APIs report it: a JSON body's
//! `usage` (`prompt_tokens`/`completion_tokens`/`total_tokens`, or the Responses and Anthropic
//! APIs' `input_tokens`/`output_tokens`), or, for a streamed answer (`text/event-stream`), the
//! `usage` of its `data:` events (OpenAI sends it in the last event when the request asks for
//! `stream_options.include_usage`; Anthropic splits it between `message_start` and
//! `message_delta`). A streamed answer is buffered for this, so it reaches the client whole
//! once the model finished.
//!
//! The prompt estimate (`estimate-prompt-tokens="true"`) counts the text of the request's
//! `messages` (string or text-part contents), `prompt`, `input` and `system`: one token per four
//! characters, rounded up, and three per message. It is an estimate, as Azure's is; the usage the
//! model reports replaces it when the answer is known.

use crate::exchange::Exchange;
use crate::run::Io;

/// The tokens one call used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub prompt: u64,
    pub completion: u64,
    pub total: u64,
}

/// Work a language-model policy left for when the backend's answer is known: settled at the
/// start of outbound, before its policies run (so they see the variables it sets).
#[derive(Debug, Clone)]
pub(crate) enum Pending {
    Limit(super::llm_token_limit::Charge),
    Metric(super::llm_emit_token_metric::Emission),
}

/// Settles what the language-model policies left, with the usage the answer reports.
pub(crate) async fn settle<I: Io>(ex: &mut Exchange, io: &mut I) {
    let pending = std::mem::take(&mut ex.llm_pending);
    let answer = ex.response.as_ref().and_then(|r| r.body.as_deref());
    let usage = answer.and_then(usage);
    let model = answer.and_then(model);
    for p in pending {
        match p {
            Pending::Limit(charge) => charge.settle(ex, io, usage).await,
            Pending::Metric(emission) => emission.emit(io, usage, model.as_deref()),
        }
    }
}

/// The usage a model's answer reports, if it reports one.
pub fn usage(body: &[u8]) -> Option<Usage> {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        return v.get("usage").and_then(read_usage);
    }
    // A stream of server-sent events: the usage its events carry.
    let text = std::str::from_utf8(body).ok()?;
    let mut found: Option<Usage> = None;
    for line in text.lines() {
        let Some(data) = line.strip_prefix("data:") else {
            continue;
        };
        let Ok(event) = serde_json::from_str::<serde_json::Value>(data.trim()) else {
            continue;
        };
        let u = event
            .get("usage")
            .or_else(|| event.get("message").and_then(|m| m.get("usage")))
            .or_else(|| event.get("response").and_then(|m| m.get("usage")))
            .and_then(read_usage);
        if let Some(u) = u {
            let f = found.get_or_insert_with(Usage::default);
            f.prompt = f.prompt.max(u.prompt);
            f.completion = f.completion.max(u.completion);
            f.total = f.total.max(u.total).max(f.prompt + f.completion);
        }
    }
    found
}

fn read_usage(u: &serde_json::Value) -> Option<Usage> {
    let n = |names: &[&str]| {
        names
            .iter()
            .find_map(|k| u.get(*k).and_then(|v| v.as_u64()))
    };
    let prompt = n(&["prompt_tokens", "input_tokens"]);
    let completion = n(&["completion_tokens", "output_tokens"]);
    let total = n(&["total_tokens"]);
    if prompt.is_none() && completion.is_none() && total.is_none() {
        return None;
    }
    let (prompt, completion) = (prompt.unwrap_or(0), completion.unwrap_or(0));
    Some(Usage {
        prompt,
        completion,
        total: total
            .unwrap_or(prompt + completion)
            .max(prompt + completion),
    })
}

/// The model a JSON answer names (`model`), for the `Model` dimension.
fn model(body: &[u8]) -> Option<String> {
    let v = serde_json::from_slice::<serde_json::Value>(body).ok()?;
    v.get("model")?.as_str().map(str::to_owned)
}

/// An estimate of the tokens of the prompt in a request body (see the module comment); 0 when
/// the body is not JSON.
pub fn estimate_prompt(body: &[u8]) -> u64 {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return 0;
    };
    let mut chars = 0usize;
    let mut messages = 0u64;
    if let Some(list) = v.get("messages").and_then(|m| m.as_array()) {
        for m in list {
            messages += 1;
            chars += text_chars(m.get("content"));
            chars += m.get("name").and_then(|n| n.as_str()).map_or(0, str::len);
        }
    }
    chars += text_chars(v.get("prompt"));
    chars += text_chars(v.get("system"));
    match v.get("input") {
        Some(serde_json::Value::Array(items)) => {
            for item in items {
                match item.get("content") {
                    Some(content) => {
                        messages += 1;
                        chars += text_chars(Some(content));
                    }
                    None => chars += text_chars(Some(item)),
                }
            }
        }
        other => chars += text_chars(other),
    }
    (chars as u64).div_ceil(4) + 3 * messages
}

/// Characters of text in a content value: a string, a list of strings, or a list of parts
/// with `text`.
fn text_chars(v: Option<&serde_json::Value>) -> usize {
    match v {
        Some(serde_json::Value::String(s)) => s.chars().count(),
        Some(serde_json::Value::Array(parts)) => parts
            .iter()
            .map(|p| match p {
                serde_json::Value::String(s) => s.chars().count(),
                other => other
                    .get("text")
                    .and_then(|t| t.as_str())
                    .map_or(0, |s| s.chars().count()),
            })
            .sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_usage_of_json_answers() {
        let chat = br#"{"id":"c1","model":"gpt-4o","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":30,"total_tokens":42}}"#;
        assert_eq!(
            usage(chat),
            Some(Usage {
                prompt: 12,
                completion: 30,
                total: 42
            })
        );
        assert_eq!(model(chat).as_deref(), Some("gpt-4o"));
        let responses = br#"{"usage":{"input_tokens":5,"output_tokens":7}}"#;
        assert_eq!(
            usage(responses),
            Some(Usage {
                prompt: 5,
                completion: 7,
                total: 12
            })
        );
        let embeddings = br#"{"data":[],"usage":{"prompt_tokens":8,"total_tokens":8}}"#;
        assert_eq!(
            usage(embeddings),
            Some(Usage {
                prompt: 8,
                completion: 0,
                total: 8
            })
        );
        assert_eq!(usage(br#"{"error":{"code":"429"}}"#), None);
        assert_eq!(usage(br#"{"usage":null}"#), None);
        assert_eq!(usage(b"not json"), None);
    }

    #[test]
    fn reads_the_usage_of_streamed_answers() {
        let openai = b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n\
            data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n\
            data: [DONE]\n\n";
        assert_eq!(
            usage(openai),
            Some(Usage {
                prompt: 9,
                completion: 2,
                total: 11
            })
        );
        let anthropic = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":20,\"output_tokens\":1}}}\n\n\
            event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":15}}\n\n";
        assert_eq!(
            usage(anthropic),
            Some(Usage {
                prompt: 20,
                completion: 15,
                total: 35
            })
        );
        assert_eq!(usage(b"data: {\"choices\":[]}\n\ndata: [DONE]\n"), None);
    }

    #[test]
    fn estimates_prompts_from_their_text() {
        // 40 characters of content in two messages: 10 tokens and 3 per message.
        let chat = br#"{"messages":[{"role":"system","content":"0123456789012345678901234"},{"role":"user","content":[{"type":"text","text":"abcdefghijklmno"}]}]}"#;
        assert_eq!(estimate_prompt(chat), 16);
        assert_eq!(estimate_prompt(br#"{"prompt":"abcde"}"#), 2);
        assert_eq!(estimate_prompt(br#"{"input":["abcd","efgh"]}"#), 2);
        assert_eq!(
            estimate_prompt(br#"{"input":[{"role":"user","content":"abcd"}]}"#),
            4
        );
        assert_eq!(estimate_prompt(b"<xml/>"), 0);
        assert_eq!(estimate_prompt(br#"{"model":"m"}"#), 0);
    }
}
