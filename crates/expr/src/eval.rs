//! The interpreter: walks the compiled tree against one request's [`Context`], charging every
//! node, loop iteration, sequence element and produced byte to the [`Budget`]. Failures are
//! [`RuntimeError`]s; nothing here panics or recurses deeper than the source nested.

use super::builtins::convert::{Mode, convert, to_json};
use super::builtins::{self, Rt, linq, string};
use super::context::Context;
use super::error::{ErrorKind, RtResult, RuntimeError};
use super::ir::{Assign, Body, Call, Init, InitOp, Linq, Mutate, Node, Piece, StaticCall, Stmt};
use super::json::Json;
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

/// How deeply arrays and JSON tokens built by an expression may nest (JSON parsed from text
/// is limited to 128 by the parser).
const MAX_NESTING: usize = 128;

fn too_deep() -> RuntimeError {
    RuntimeError::new(
        ErrorKind::Argument,
        format_args!("Values may nest at most {MAX_NESTING} levels deep."),
    )
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

    /// Dispatches on the node. Kept small on purpose: it is on every level of recursion, so
    /// each arm's work (and stack) lives in its own method.
    fn eval(&mut self, node: &Node) -> Ev<Value> {
        self.rt.budget.charge(1)?;
        match node {
            Node::Const(v) => Ok(v.clone()),
            Node::Local(slot) => Ok(self.local(*slot)),
            Node::Context => Ok(Value::obj(Obj::Ctx(CtxObj::Context))),
            Node::Prop(recv, m) => {
                let r = self.eval(recv)?;
                Ok(builtins::get(&r, *m, &mut self.rt)?)
            }
            Node::StaticProp(c, m) => Ok(builtins::static_get(*c, *m, &mut self.rt)?),
            Node::Call(call) => self.call(call),
            Node::StaticCall(call) => self.static_call(call),
            Node::Index(recv, index) => {
                let r = self.eval(recv)?;
                let i = self.eval(index)?;
                Ok(builtins::index(&r, &i, &mut self.rt)?)
            }
            Node::Linq(l) => self.linq(l),
            Node::Unary(op, operand) => {
                let v = self.eval(operand)?;
                Ok(ops::unary(*op, v)?)
            }
            Node::Binary(op, a, b) => {
                let x = self.eval(a)?;
                let y = self.eval(b)?;
                Ok(ops::binary(*op, x, y, &mut self.rt)?)
            }
            Node::And(a, b) => {
                let x = self.eval(a)?;
                Ok(Value::Bool(truthy(&x)? && truthy(&self.eval(b)?)?))
            }
            Node::Or(a, b) => {
                let x = self.eval(a)?;
                Ok(Value::Bool(truthy(&x)? || truthy(&self.eval(b)?)?))
            }
            Node::Coalesce(a, b) => {
                let x = self.eval(a)?;
                if x.is_null() { self.eval(b) } else { Ok(x) }
            }
            Node::Cond(c, t, f) => {
                let x = self.eval(c)?;
                if truthy(&x)? {
                    self.eval(t)
                } else {
                    self.eval(f)
                }
            }
            Node::Convert(inner, ty, mode) => {
                let v = self.eval(inner)?;
                Ok(convert(v, ty, *mode)?)
            }
            Node::Interp(pieces) => self.interpolate(pieces),
            Node::Concat(pieces) => self.concat(pieces),
            Node::NullChain(inner) => match self.eval(inner) {
                Err(Halt::Short) => Ok(Value::Null),
                other => other,
            },
            Node::NullGuard(inner) => {
                let v = self.eval(inner)?;
                if v.is_null() { Err(Halt::Short) } else { Ok(v) }
            }
            Node::Assign(a) => self.assign(a),
            Node::Mutate(mutation) => self.mutate(mutation),
            Node::New(class, args) => {
                let args = self.args(args)?;
                self.check_nesting(&args)?;
                Ok(builtins::new_value(*class, &args, &mut self.rt)?)
            }
            Node::NewArray(items) => {
                let items = self.args(items)?;
                self.check_nesting(&items)?;
                Ok(Value::Array(items.into()))
            }
            Node::NewArraySized { size, fill, bytes } => {
                let n = match self.eval(size)? {
                    Value::Int(n) => usize::try_from(n).map_err(|_| {
                        RuntimeError::new(
                            crate::error::ErrorKind::Overflow,
                            "Arithmetic operation resulted in an overflow.",
                        )
                    })?,
                    other => return Err(RuntimeError::cast(other.type_name(), "Int32").into()),
                };
                self.rt
                    .alloc(n.saturating_mul(if *bytes { 1 } else { 8 }))?;
                self.rt.steps(n)?;
                Ok(if *bytes {
                    Value::Bytes(vec![0u8; n].into())
                } else {
                    Value::Array(vec![fill.clone(); n].into())
                })
            }
            Node::Init(init) => self.initialize(init),
        }
    }

    fn initialize(&mut self, init: &Init) -> Ev<Value> {
        let mut target = match self.eval(&init.base)? {
            Value::Json(j @ (Json::Object(_) | Json::Array(_))) => j,
            mut builder @ Value::Handle(_) => {
                for op in &init.ops {
                    if let InitOp::Member(m, value) = op {
                        let value = self.eval(value)?;
                        builder = builtins::call(
                            &builder,
                            *m,
                            std::slice::from_ref(&value),
                            &builtins::Extra::default(),
                            &mut self.rt,
                        )?;
                    }
                }
                return Ok(builder);
            }
            other => {
                return Err(RuntimeError::new(
                    ErrorKind::InvalidCast,
                    format_args!(
                        "A collection initializer cannot fill '{}'.",
                        other.type_name()
                    ),
                )
                .into());
            }
        };
        for op in &init.ops {
            match op {
                InitOp::Set(key, value) => {
                    let key = self.eval(key)?;
                    let value = self.eval(value)?;
                    self.check_nesting(std::slice::from_ref(&value))?;
                    let Value::String(key) = key else {
                        return Err(builtins::null_argument("key").into());
                    };
                    builtins::json::init_set(&mut target, key, &value)?;
                }
                InitOp::Add(value) => {
                    let value = self.eval(value)?;
                    self.check_nesting(std::slice::from_ref(&value))?;
                    builtins::json::init_add(&mut target, &value)?;
                }
                InitOp::Member(m, _) => {
                    return Err(
                        RuntimeError::no_member(Value::Json(target).type_name(), m.name()).into(),
                    );
                }
            }
        }
        Ok(Value::Json(target))
    }

    fn call(&mut self, call: &Call) -> Ev<Value> {
        let recv = self.eval(&call.recv)?;
        let args = self.args(&call.args)?;
        Ok(match call.out {
            Some(slot) => {
                let (result, out) = builtins::call_out(&recv, call.member, &args, &mut self.rt)?;
                self.set_local(slot, out);
                result
            }
            None => builtins::call(&recv, call.member, &args, &call.extra, &mut self.rt)?,
        })
    }

    fn static_call(&mut self, call: &StaticCall) -> Ev<Value> {
        let args = self.args(&call.args)?;
        Ok(match call.out {
            Some(slot) => {
                let (result, out) = builtins::static_call_out(call.class, call.member, &args)?;
                self.set_local(slot, out);
                result
            }
            None => {
                builtins::static_call(call.class, call.member, &args, &call.extra, &mut self.rt)?
            }
        })
    }

    fn linq(&mut self, l: &Linq) -> Ev<Value> {
        let recv = self.eval(&l.recv)?;
        let items = linq::enumerate(&recv, &mut self.rt)?;
        let arg = match &l.arg {
            Some(a) => Some(self.eval(a)?),
            None => None,
        };
        Ok(match &l.lambda {
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
        })
    }

    /// C#'s string `+`: every piece's `ToString()`, null as empty; never null itself.
    fn concat(&mut self, pieces: &[Node]) -> Ev<Value> {
        let mut out = String::with_capacity(64);
        for p in pieces {
            let v = self.eval(p)?;
            let text = v.policy_str();
            self.rt.alloc(text.len())?;
            out.push_str(&text);
        }
        Ok(Value::String(out.into()))
    }

    fn interpolate(&mut self, pieces: &[Piece]) -> Ev<Value> {
        let mut out = String::new();
        for p in pieces {
            out.push_str(&p.text);
            if let Some(h) = &p.hole {
                let v = self.eval(&h.node)?;
                let text =
                    string::align_text(string::format_value(&v, h.format.as_deref())?, h.align);
                self.rt.alloc(text.len())?;
                out.push_str(&text);
            }
        }
        Ok(Value::String(out.into()))
    }

    /// Refuses values nested deeper than [`MAX_NESTING`] (arrays in arrays, JSON in JSON), so
    /// that building, printing and dropping them can't exhaust the stack. Every visited
    /// element costs a step.
    fn check_nesting(&mut self, values: &[Value]) -> RtResult<()> {
        self.check_nesting_at(values, 1)
    }

    /// [`Machine::check_nesting`] for values placed `depth` levels down.
    fn check_nesting_at(&mut self, values: &[Value], depth: usize) -> RtResult<()> {
        check_nesting(&mut self.rt, values, depth)
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
        // The token assigned into was within the limit; what is put `path.len()` levels below
        // its root must keep it there (`b["x"] = b` nests `b` one deeper each time).
        self.check_nesting_at(std::slice::from_ref(&new), keys.len())?;
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

    fn mutate(&mut self, mutation: &Mutate) -> Ev<Value> {
        let keys = self.args(&mutation.path)?;
        let args = self.args(&mutation.args)?;
        self.check_nesting_at(&args, keys.len() + 1)?;
        match self.locals.get_mut(mutation.slot as usize) {
            Some(Value::Json(root)) => {
                Ok(builtins::json::mutate(root, &keys, mutation.member, &args)?)
            }
            Some(Value::Null) | None => Err(RuntimeError::null_reference().into()),
            Some(other) => {
                Err(RuntimeError::no_member(other.type_name(), mutation.member.name()).into())
            }
        }
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

/// Refuses values nested deeper than `MAX_NESTING` when placed `depth` levels down, one step
/// per value visited (so every value an expression builds can be walked without recursion
/// limits mattering).
pub(crate) fn check_nesting(rt: &mut Rt<'_>, values: &[Value], depth: usize) -> RtResult<()> {
    let mut stack: Vec<(&Value, usize)> = values.iter().map(|v| (v, depth)).collect();
    let mut json: Vec<(&Json, usize)> = Vec::new();
    while let Some((v, depth)) = stack.pop() {
        rt.steps(1)?;
        match v {
            Value::Array(items) => stack.extend(items.iter().map(|i| (i, depth + 1))),
            Value::Json(j) => json.push((j, depth)),
            Value::Handle(h) => {
                if let Obj::Pair(p) = &h.0 {
                    stack.push((&p.0, depth + 1));
                    stack.push((&p.1, depth + 1));
                }
            }
            _ => {}
        }
        if depth > MAX_NESTING {
            return Err(too_deep());
        }
    }
    while let Some((j, depth)) = json.pop() {
        rt.steps(1)?;
        if depth > MAX_NESTING {
            return Err(too_deep());
        }
        match j {
            Json::Array(items) => json.extend(items.iter().map(|i| (i, depth + 1))),
            Json::Object(o) => json.extend(o.iter().map(|(_, v)| (v, depth + 1))),
            _ => {}
        }
    }
    Ok(())
}
