//! Signals as triggers: SIGHUP, SIGUSR1, SIGUSR2 request a pass; SIGTERM and SIGINT request the
//! ordered shutdown.

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc::UnboundedSender;

use super::Trigger;

/// Installs the handlers and spawns a task forwarding each signal as a [`Trigger`]. Must be called
/// inside a tokio runtime. The task ends when the receiver is dropped.
pub fn spawn_signals(tx: UnboundedSender<Trigger>) -> anyhow::Result<()> {
    if tokio::runtime::Handle::try_current().is_err() {
        anyhow::bail!("spawn_signals must be called inside a tokio runtime");
    }
    let install = |kind: SignalKind, name: &str| {
        signal(kind).map_err(|e| anyhow::anyhow!("cannot install the {name} handler: {e}"))
    };
    let mut hup = install(SignalKind::hangup(), "SIGHUP")?;
    let mut usr1 = install(SignalKind::user_defined1(), "SIGUSR1")?;
    let mut usr2 = install(SignalKind::user_defined2(), "SIGUSR2")?;
    let mut term = install(SignalKind::terminate(), "SIGTERM")?;
    let mut int = install(SignalKind::interrupt(), "SIGINT")?;
    tokio::spawn(async move {
        loop {
            let trigger = tokio::select! {
                Some(()) = hup.recv() => Trigger::Sighup,
                Some(()) = usr1.recv() => Trigger::Sigusr1,
                Some(()) = usr2.recv() => Trigger::Sigusr2,
                Some(()) = term.recv() => Trigger::Shutdown,
                Some(()) = int.recv() => Trigger::Shutdown,
                else => break,
            };
            tracing::debug!(?trigger, "signal received");
            if tx.send(trigger).is_err() {
                break;
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn refuses_outside_a_runtime() {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        assert!(spawn_signals(tx).is_err());
    }

    #[tokio::test]
    async fn signals_become_triggers() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        spawn_signals(tx).unwrap();
        let me = rustix::process::getpid();
        for (sig, expected) in [
            (rustix::process::Signal::USR1, Trigger::Sigusr1),
            (rustix::process::Signal::USR2, Trigger::Sigusr2),
            (rustix::process::Signal::HUP, Trigger::Sighup),
            (rustix::process::Signal::TERM, Trigger::Shutdown),
            (rustix::process::Signal::INT, Trigger::Shutdown),
        ] {
            rustix::process::kill_process(me, sig).unwrap();
            let got = tokio::time::timeout(Duration::from_secs(3), rx.recv())
                .await
                .expect("no trigger within 3 s");
            assert_eq!(got, Some(expected));
        }
    }
}
