//! [`Handler`]: the callbacks a module implements, and the types they receive and return.
//! Every method has a default, so a module implements only what it needs.

use serde_json::value::RawValue;
use serde_json::Value;

use crate::ctx::{Ctx, RequestKind, Responder};

/// A request to answer: an `rpc_request` from another module or a `call` from the kernel.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub kind: RequestKind,
    /// The correlation id to answer with (kernel-generated for RPCs).
    pub id: &'a str,
    pub method: &'a str,
    /// Raw `params` (`None` when absent or `null`).
    pub params: Option<&'a RawValue>,
    /// The calling module (RPCs only).
    pub from: Option<&'a str>,
    /// The service addressed (RPCs only).
    pub service: Option<&'a str>,
}

impl Request<'_> {
    /// `params` parsed (`Value::Null` when absent).
    pub fn params_value(&self) -> Value {
        self.params
            .and_then(|p| serde_json::from_str(p.get()).ok())
            .unwrap_or(Value::Null)
    }

    /// A handle to answer this request later with [`Ctx::respond`].
    pub fn responder(&self) -> Responder {
        Responder {
            kind: self.kind,
            id: self.id.to_owned(),
        }
    }
}

/// The answer of [`Handler::on_request`].
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Sent as `result`.
    Ok(Value),
    /// Sent as `error` (a string, like the reference's `String(err)`).
    Err(String),
    /// Nothing is sent now; answer later with [`Ctx::respond`] (or never).
    Later,
}

impl From<Result<Value, String>> for Reply {
    fn from(r: Result<Value, String>) -> Reply {
        match r {
            Ok(v) => Reply::Ok(v),
            Err(e) => Reply::Err(e),
        }
    }
}

/// The module's behaviour. Callbacks run one at a time on the thread that called
/// [`Module::run`](crate::Module::run), in the order the kernel sent the messages; replies to
/// the module's own RPCs and calls are routed by a separate reader thread, so a callback may
/// block on [`Ctx::rpc`] or [`Ctx::call`].
pub trait Handler {
    /// The manifest sent in the automatic `ready` after `init` (content is informative only:
    /// the kernel uses module.json).
    fn manifest(&self) -> Value {
        Value::Object(Default::default())
    }

    /// `install` (first spawn after approval only).
    fn on_install(&mut self, _ctx: &Ctx) {}

    /// `init`: `config` is `{"<configKey>": section}` or `{}`. An error is reported on stderr,
    /// sent as `nack` with id `init`, and the module exits with code 1.
    fn on_init(&mut self, _ctx: &Ctx, _config: &Value) -> Result<(), String> {
        Ok(())
    }

    /// `deps_ready`: every required service is available.
    fn on_deps_ready(&mut self, _ctx: &Ctx) {}

    /// `service_available`: an optional service appeared.
    fn on_service_available(&mut self, _ctx: &Ctx, _service: &str) {}

    /// `deliver`: answered with `ack`, or `nack` carrying the error.
    fn on_message(
        &mut self,
        _ctx: &Ctx,
        _topic: &str,
        _payload: Option<&RawValue>,
    ) -> Result<(), String> {
        Ok(())
    }

    /// `rpc_request` (answered with `rpc_response`) or kernel `call` (answered with
    /// `call:response`). The default refuses every method.
    fn on_request(&mut self, _ctx: &Ctx, req: &Request<'_>) -> Reply {
        Reply::Err(format!("Error: Unknown method: {}", req.method))
    }

    /// `config:update`: the new config is already in [`Ctx::config`]; an error rolls it back.
    fn on_config_update(
        &mut self,
        _ctx: &Ctx,
        _config: &Value,
        _changed: &[String],
    ) -> Result<(), String> {
        Ok(())
    }

    /// `shutdown`, or stdin closed.
    fn on_shutdown(&mut self, _ctx: &Ctx) {}

    /// Any message type the SDK does not know.
    fn on_unknown(&mut self, _ctx: &Ctx, _ty: &str) {}
}
