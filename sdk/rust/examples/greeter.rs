//! The minimal module of README.md (kept identical to it; built by `cargo test`).

use pons_sdk::{json, Ctx, Handler, Module, RawValue, Reply, Request, Value};

struct Greeter {
    greeting: String,
}

impl Handler for Greeter {
    // `init` arrives with {"<configKey>": section}; `ready` is sent automatically after this.
    fn on_init(&mut self, _ctx: &Ctx, config: &Value) -> Result<(), String> {
        if let Some(g) = config["greeter"]["greeting"].as_str() {
            self.greeting = g.to_owned();
        }
        Ok(())
    }

    // Every required service is up.
    fn on_deps_ready(&mut self, ctx: &Ctx) {
        let _ = ctx.log("info", "greeter ready", None);
        let _ = ctx.publish("greeter.started", &json!({"greeting": self.greeting}));
    }

    // A subscribed topic was delivered; Ok sends `ack`, Err sends `nack`.
    fn on_message(
        &mut self,
        ctx: &Ctx,
        topic: &str,
        payload: Option<&RawValue>,
    ) -> Result<(), String> {
        let _ = ctx.log("debug", &format!("got {topic}"), None);
        let _ = payload;
        Ok(())
    }

    // An RPC to a service this module provides (or a kernel `call`).
    fn on_request(&mut self, _ctx: &Ctx, req: &Request<'_>) -> Reply {
        match req.method {
            "greet" => {
                let name = req.params_value()["name"]
                    .as_str()
                    .unwrap_or("you")
                    .to_owned();
                Reply::Ok(json!({"text": format!("{}, {name}!", self.greeting)}))
            }
            other => Reply::Err(format!("Error: Unknown method: {other}")),
        }
    }
}

fn main() {
    Module::new(Greeter {
        greeting: "Hello".into(),
    })
    .run_and_exit()
}
