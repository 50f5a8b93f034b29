//! The interpreter: walks the compiled tree against one request's [`Context`], charging every
//! node, loop iteration, sequence element and produced byte to the [`Budget`]. Failures are
//! [`RuntimeError`]s; nothing here panics or recurses deeper than the source nested.

use super::builtins::convert::{Mode, convert, to_json};
use super::builtins::{self, Rt, linq, string};
use super::context::Context;
use super::error::{ErrorKind, RtResult, RuntimeError};
use super::ir::{Assign, Body, Node, Stmt};
use super::ops::{self, truthy};
use super::value::{CtxObj, Obj, Value};

/// How many steps an evaluation may take; shared by everything one evaluation does.
///
/// A step is one node of the compiled tree, one loop iteration or sequence element, or
/// [`Budget::BYTES_PER_STEP`] bytes of strings or arrays produced. The default allows
/// [`Budget::DEFAULT_STEPS`]: far more than any real policy expression needs, and a bound on
/// time and memory for any that misbehaves.
#[derive(Clone, Debug)]
pub struct Budget {
    limit: u64,
    used: u64,
}

impl Budget {
    /// The default step limit.
    pub const DEFAULT_STEPS: u64 = 100_000;
    /// Bytes of produced output that cost one step.
    pub const BYTES_PER_STEP: u64 = 128;

    /// A budget of `steps`.
    pub fn new(steps: u64) -> Self {
        Self {
            limit: steps,
            used: 0,
        }
    }

    /// Steps used so far.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Steps left.
    pub fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }

    pub(crate) fn charge(&mut self, steps: u64) -> RtResult<()> {
        self.used = self.used.saturating_add(steps);
        if self.used > self.limit {
            self.used = self.limit.saturating_add(1);
            return Err(RuntimeError::new(
                ErrorKind::BudgetExceeded,
                format_args!(
                    "The expression exceeded its budget of {} steps.",
                    self.limit
                ),
            ));
        }
        Ok(())
    }

    pub(crate) fn charge_bytes(&mut self, bytes: usize) -> RtResult<()> {
        let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
        self.charge(bytes / Self::BYTES_PER_STEP + 1)
    }
}

impl Default for Budget {
    fn default() -> Self {
        Self::new(Self::DEFAULT_STEPS)
    }
}

/// Why evaluation of a node stopped.
enum Halt {
    Error(Box<RuntimeError>),
    /// A `?.` met null: unwinds to the chain's root, which yields null.
    Short,
}

impl From<RuntimeError> for Halt {
    fn from(e: RuntimeError) -> Self {
        Self::Error(Box::new(e))
    }
}

type Ev<T> = Result<T, Halt>;

enum Flow {
    Normal,
    Return(Value),
    Break,
    Continue,
}

pub(crate) fn run(
    body: &Body,
    locals: u32,
    ctx: &dyn Context,
    budget: &mut Budget,
) -> Result<Value, RuntimeError> {
    let slots = usize::try_from(locals).unwrap_or(0);
    let mut m = Machine {
        rt: Rt { ctx, budget },
        locals: vec![Value::Null; slots],
    };
    let result = match body {
        Body::Expr(node) => m.eval(node),
        Body::Block(stmts) => m.exec(stmts).map(|flow| match flow {
            Flow::Return(v) => v,
            _ => Value::Null,
        }),
    };
    match result {
        Ok(v) => Ok(v),
        Err(Halt::Short) => Ok(Value::Null),
        Err(Halt::Error(e)) => Err(*e),
    }
}

struct Machine<'a> {
    rt: Rt<'a>,
    locals: Vec<Value>,
}

impl Machine<'_> {
    fn local(&self, slot: u32) -> Value {
        self.locals
            .get(slot as usize)
            .cloned()
            .unwrap_or(Value::Null)
    }

    fn set_local(&mut self, slot: u32, v: Value) {
        if let Some(l) = self.locals.get_mut(slot as usize) {
            *l = v;
        }
    }

    fn args(&mut self, nodes: &[Node]) -> Ev<Vec<Value>> {
        nodes.iter().map(|n| self.eval(n)).collect()
    }

    fn eval(&mut self, node: &Node) -> Ev<Value> {
        self.rt.budget.charge(1)?;
        Ok(match node {
            Node::Const(v) => v.clone(),
            Node::Local(slot) => self.local(*slot),
            Node::Context => Value::obj(Obj::Ctx(CtxObj::Context)),
            Node::Prop(recv, m) => {
                let r = self.eval(recv)?;
                builtins::get(&r, *m, &mut self.rt)?
            }
            Node::StaticProp(c, m) => builtins::static_get(*c, *m, &mut self.rt)?,
            Node::Call(call) => {
                let recv = self.eval(&call.recv)?;
                let args = self.args(&call.args)?;
                match call.out {
                    Some(slot) => {
                        let (result, out) = builtins::call_out(&recv, call.member, &args)?;
                        self.set_local(slot, out);
                        result
                    }
                    None => builtins::call(&recv, call.member, &args, &call.extra, &mut self.rt)?,
                }
            }
            Node::StaticCall(call) => {
                let args = self.args(&call.args)?;
                match call.out {
                    Some(slot) => {
                        let (result, out) =
                            builtins::static_call_out(call.class, call.member, &args)?;
                        self.set_local(slot, out);
                        result
                    }
                    None => builtins::static_call(
                        call.class,
                        call.member,
                        &args,
                        &call.extra,
                        &mut self.rt,
                    )?,
                }
            }
            Node::Index(recv, index) => {
                let r = self.eval(recv)?;
                let i = self.eval(index)?;
                builtins::index(&r, &i, &mut self.rt)?
            }
            Node::Linq(l) => {
                let recv = self.eval(&l.recv)?;
                let items = linq::enumerate(&recv, &mut self.rt)?;
                let arg = match &l.arg {
                    Some(a) => Some(self.eval(a)?),
                    None => None,
                };
                match &l.lambda {
                    Some((slot, body)) => {
                        let mut f = |v: &Value| -> RtResult<Value> {
                            self.set_local(*slot, v.clone());
                            match self.eval(body) {
                                Ok(v) => Ok(v),
                                Err(Halt::Short) => Ok(Value::Null),
                                Err(Halt::Error(e)) => Err(*e),
                            }
                        };
                        linq::run(l.op, items, Some(&mut f), arg.as_ref())?
                    }
                    None => linq::run(l.op, items, None, arg.as_ref())?,
                }
            }
            Node::Unary(op, operand) => {
                let v = self.eval(operand)?;
                ops::unary(*op, v)?
            }
            Node::Binary(op, a, b) => {
                let x = self.eval(a)?;
                let y = self.eval(b)?;
                ops::binary(*op, x, y, &mut self.rt)?
            }
            Node::And(a, b) => {
                let x = self.eval(a)?;
                Value::Bool(truthy(&x)? && truthy(&self.eval(b)?)?)
            }
            Node::Or(a, b) => {
                let x = self.eval(a)?;
                Value::Bool(truthy(&x)? || truthy(&self.eval(b)?)?)
            }
            Node::Coalesce(a, b) => {
                let x = self.eval(a)?;
                if x.is_null() { self.eval(b)? } else { x }
            }
            Node::Cond(c, t, f) => {
                let x = self.eval(c)?;
                if truthy(&x)? {
                    self.eval(t)?
                } else {
                    self.eval(f)?
                }
            }
            Node::Convert(inner, ty, mode) => {
                let v = self.eval(inner)?;
                convert(v, ty, *mode)?
            }
            Node::Interp(pieces) => {
                let mut out = String::new();
                for p in pieces.iter() {
                    out.push_str(&p.text);
                    if let Some(h) = &p.hole {
                        let v = self.eval(&h.node)?;
                        let text = string::format_value(&v, h.format.as_deref())?;
                        out.push_str(&string::align_text(text, h.align));
                    }
                    self.rt.alloc(out.len())?;
                }
                Value::String(out.into())
            }
            Node::NullChain(inner) => match self.eval(inner) {
                Err(Halt::Short) => Value::Null,
                other => other?,
            },
            Node::NullGuard(inner) => {
                let v = self.eval(inner)?;
                if v.is_null() {
                    return Err(Halt::Short);
                }
                v
            }
            Node::Assign(a) => self.assign(a)?,
            Node::New(class, args) => {
                let args = self.args(args)?;
                builtins::new_value(*class, &args)?
            }
            Node::NewArray(items) => {
                let items = self.args(items)?;
                self.rt.steps(items.len())?;
                Value::Array(items.into())
            }
        })
    }

    fn assign(&mut self, a: &Assign) -> Ev<Value> {
        let value = self.eval(&a.value)?;
        if a.path.is_empty() {
            let old = self.local(a.slot);
            let new = match a.op {
                Some(op) => ops::binary(op, old.clone(), value, &mut self.rt)?,
                None => value,
            };
            let new = match &a.conv {
                Some(t) => convert(new, t, Mode::Implicit)?,
                None => new,
            };
            self.set_local(a.slot, new.clone());
            return Ok(if a.postfix { old } else { new });
        }
        let keys = self.args(&a.path)?;
        let new = match a.op {
            Some(op) => {
                let mut current = self.local(a.slot);
                for k in &keys {
                    current = builtins::index(&current, k, &mut self.rt)?;
                }
                ops::binary(op, current, value, &mut self.rt)?
            }
            None => value,
        };
        let json = to_json(&new)?;
        match self.locals.get_mut(a.slot as usize) {
            Some(Value::Json(root)) => builtins::json::assign_path(root, &keys, json)?,
            Some(Value::Null) | None => return Err(RuntimeError::null_reference().into()),
            Some(other) => {
                return Err(RuntimeError::new(
                    ErrorKind::Binder,
                    format_args!(
                        "Property or indexer of '{}' cannot be assigned to -- it is read only",
                        other.type_name()
                    ),
                )
                .into());
            }
        }
        Ok(new)
    }

    fn exec(&mut self, stmts: &[Stmt]) -> Ev<Flow> {
        for s in stmts {
            match s {
                Stmt::Expr(n) => {
                    self.eval(n)?;
                }
                Stmt::Let(slot, n) => {
                    let v = self.eval(n)?;
                    self.set_local(*slot, v);
                }
                Stmt::If(c, t, e) => {
                    let cond = self.eval(c)?;
                    let flow = if truthy(&cond)? {
                        self.exec(t)?
                    } else {
                        self.exec(e)?
                    };
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Stmt::Return(n) => return Ok(Flow::Return(self.eval(n)?)),
                Stmt::Foreach {
                    slot,
                    conv,
                    iter,
                    body,
                } => {
                    let seq = self.eval(iter)?;
                    for item in linq::enumerate(&seq, &mut self.rt)? {
                        self.rt.steps(1)?;
                        let item = match conv {
                            Some(t) => convert(item, t, Mode::Cast)?,
                            None => item,
                        };
                        self.set_local(*slot, item);
                        match self.exec(body)? {
                            Flow::Break => break,
                            Flow::Return(v) => return Ok(Flow::Return(v)),
                            Flow::Normal | Flow::Continue => {}
                        }
                    }
                }
                Stmt::Loop { cond, step, body } => loop {
                    self.rt.steps(1)?;
                    if let Some(c) = cond {
                        let v = self.eval(c)?;
                        if !truthy(&v)? {
                            break;
                        }
                    }
                    match self.exec(body)? {
                        Flow::Break => break,
                        Flow::Return(v) => return Ok(Flow::Return(v)),
                        Flow::Normal | Flow::Continue => {}
                    }
                    for s in step.iter() {
                        self.eval(s)?;
                    }
                },
                Stmt::Break => return Ok(Flow::Break),
                Stmt::Continue => return Ok(Flow::Continue),
            }
        }
        Ok(Flow::Normal)
    }
}
