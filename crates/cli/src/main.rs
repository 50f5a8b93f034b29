//! `gatehouse`: parses the command line, builds what it names, runs it, and turns failures
//! into one clear sentence and an exit code (0 ok, 1 runtime failure, 2 bad usage or input).

mod args;
mod client;
mod demo;
mod echo;
mod portal;
#[cfg(test)]
mod reference;
mod serve;
mod settings;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};

/// A failure the user sees: one sentence, and the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub code: u8,
}

impl Failure {
    pub fn runtime(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: 1,
        }
    }

    pub fn input(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: 2,
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Up(args) => serve::up(cli.global, *args).await,
            Command::ControlPlane(args) => serve::control_plane(cli.global, *args).await,
            Command::Api(cmd) => client::api(cli.global, cmd).await,
            Command::Product(cmd) => client::product(cli.global, cmd).await,
            Command::Subscription(cmd) => client::subscription(cli.global, cmd).await,
            Command::NamedValue(cmd) => client::named_value(cli.global, cmd).await,
            Command::Policy(cmd) => client::policy(cli.global, cmd).await,
            Command::EchoBackend { listen } => echo::run(listen).await,
            Command::Gateway(args) => match args.command {
                Some(cmd) => client::gateway(cli.global, cmd).await,
                None => serve::gateway(cli.global, args.run).await,
            },
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}
