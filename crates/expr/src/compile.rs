//! Name resolution and type checking: [`ast`](super::ast) → [`ir`](super::ir). Every member
//! name becomes a [`Member`], every overload is checked against the static types C# would
//! know, locals get slots, literal regexes are compiled, and anything C# would refuse on a
//! known type (an unknown member, a wrong argument count, a type outside the allow-list) is a
//! [`CompileError`] with its position.

use std::sync::Arc;

use super::ast::{self, Arg, ArgKind, BinOp, ExprKind, InitItem, Stmt as AStmt, TypeRef, UnOp};
use super::builtins::convert::Mode;
use super::builtins::{
    self, CallTys, Extra, Member, SigErr, index_ty, linq, method_sig, new_sig, out_ty, param_names,
    prop_ty, static_prop_ty, static_sig,
};
use super::error::CompileError;
use super::ir::{self, Body, Node, Stmt};
use super::lexer::Span;
use super::types::{self, Assign, Class, JKind, Ty, assignable, join, promote};
use super::value::{CtxObj, Value};

/// Compiles a parsed program; returns the tree, the number of local slots, and the static type
/// of its result.
pub(crate) fn compile(src: &str, program: &ast::Program) -> Result<(Body, u32, Ty), CompileError> {
    let mut c = Compiler {
        src,
        scopes: vec![Vec::new()],
        slots: 0,
        loops: 0,
        returns: Vec::new(),
    };
    match program {
        ast::Program::Expr(e) => {
            let t = c.expr(e)?;
            Ok((Body::Expr(t.node), c.slots, t.ty))
        }
        ast::Program::Block(stmts, span) => {
            let body = c.block(stmts)?;
            if !always_returns(stmts) {
                return Err(c.err(
                    Span::new(span.end.saturating_sub(1), span.end),
                    "Not all code paths return a value",
                ));
            }
            let ty = c
                .returns
                .iter()
                .skip(1)
                .fold(c.returns.first().cloned().unwrap_or(Ty::Object), |a, b| {
                    join(&a, b)
                });
            Ok((Body::Block(body), c.slots, ty))
        }
    }
}

/// Whether a statement list ends every path with `return`.
fn always_returns(stmts: &[AStmt]) -> bool {
    stmts.iter().any(stmt_returns)
}

fn stmt_returns(s: &AStmt) -> bool {
    match s {
        AStmt::Return(..) => true,
        AStmt::Block(b) => always_returns(b),
        AStmt::If {
            then,
            els: Some(els),
            ..
        } => stmt_returns(then) && stmt_returns(els),
        _ => false,
    }
}

/// A method call being compiled.
#[derive(Clone, Copy)]
struct CallSite<'a> {
    name: &'a str,
    name_span: Span,
    member: Member,
    targ: Option<&'a Ty>,
    null_cond: bool,
    value_args: &'a [&'a Arg],
    out_arg: Option<&'a Arg>,
    has_lambda: bool,
    span: Span,
}

/// A compiled expression and its static type.
struct T {
    node: Node,
    ty: Ty,
}

impl T {
    fn new(node: Node, ty: Ty) -> Self {
        Self { node, ty }
    }
}

/// What a name or dotted name denotes.
enum Target {
    Value(T),
    Class(Class, Span),
    Namespace(String, Span),
}

struct Local {
    name: String,
    slot: u32,
    ty: Ty,
}

struct Compiler<'s> {
    src: &'s str,
    scopes: Vec<Vec<Local>>,
    slots: u32,
    loops: u32,
    /// Types of `return` values seen (for the block's result type).
    returns: Vec<Ty>,
}

type R<X> = Result<X, CompileError>;

impl Compiler<'_> {
    fn err(&self, span: Span, message: impl Into<String>) -> CompileError {
        CompileError::at(self.src, span.start, message)
    }

    // ---- scopes ----------------------------------------------------------------------------

    fn lookup(&self, name: &str) -> Option<&Local> {
        self.scopes
            .iter()
            .rev()
            .flat_map(|s| s.iter())
            .find(|l| l.name == name)
    }

    fn declare(&mut self, name: &str, span: Span, ty: Ty) -> R<u32> {
        if name == "context" || self.lookup(name).is_some() {
            return Err(self.err(
                span,
                format!("A local variable named '{name}' cannot be declared in this scope because that name is already used"),
            ));
        }
        let slot = self.slots;
        self.slots += 1;
        if let Some(scope) = self.scopes.last_mut() {
            scope.push(Local {
                name: name.to_owned(),
                slot,
                ty,
            });
        }
        Ok(slot)
    }

    fn scoped<X>(&mut self, f: impl FnOnce(&mut Self) -> R<X>) -> R<X> {
        self.scopes.push(Vec::new());
        let r = f(self);
        self.scopes.pop();
        r
    }

    fn type_of(&self, t: &TypeRef) -> R<Ty> {
        types::from_ref(t).map_err(|m| self.err(t.span, m))
    }

    // ---- statements ------------------------------------------------------------------------

    fn block(&mut self, stmts: &[AStmt]) -> R<Box<[Stmt]>> {
        self.scoped(|c| {
            let mut out = Vec::new();
            for s in stmts {
                c.stmt(s, &mut out)?;
            }
            Ok(out.into())
        })
    }

    fn body(&mut self, s: &AStmt) -> R<Box<[Stmt]>> {
        self.block(std::slice::from_ref(s))
    }

    fn stmt(&mut self, s: &AStmt, out: &mut Vec<Stmt>) -> R<()> {
        match s {
            AStmt::Empty => {}
            AStmt::Block(b) => {
                let inner = self.block(b)?;
                // A nested block is just its statements (scoping was checked above).
                out.extend(inner.into_vec());
            }
            AStmt::Decl { ty, vars, span } => {
                let declared = match ty {
                    Some(t) => Some((self.type_of(t)?, t.nullable)),
                    None => None,
                };
                if declared.is_none() && vars.len() > 1 {
                    return Err(self.err(
                        *span,
                        "Implicitly-typed variables cannot have multiple declarators",
                    ));
                }
                for (name, name_span, init) in vars {
                    let (slot, node) = match (&declared, init) {
                        (None, None) => {
                            return Err(self.err(
                                *name_span,
                                "Implicitly-typed variables must be initialized",
                            ));
                        }
                        (None, Some(e)) => {
                            let t = self.value_expr(e)?;
                            if t.ty == Ty::Null {
                                return Err(self.err(
                                    e.span,
                                    "Cannot assign <null> to an implicitly-typed variable",
                                ));
                            }
                            (self.declare(name, *name_span, t.ty.clone())?, t.node)
                        }
                        (Some((ty, nullable)), init) => {
                            let node = match init {
                                Some(e) => {
                                    let t = self.value_expr(e)?;
                                    self.coerce(t, ty, *nullable, e.span)?
                                }
                                None => Node::Const(builtins::context::default_of(ty)),
                            };
                            (self.declare(name, *name_span, ty.clone())?, node)
                        }
                    };
                    out.push(Stmt::Let(slot, node));
                }
            }
            AStmt::Expr(e) => {
                let t = self.expr(e)?;
                out.push(Stmt::Expr(t.node));
            }
            AStmt::If { cond, then, els } => {
                let c = self.condition(cond)?;
                let t = self.body(then)?;
                let e = match els {
                    Some(e) => self.body(e)?,
                    None => Box::new([]),
                };
                out.push(Stmt::If(c, t, e));
            }
            AStmt::Return(value, span) => {
                let Some(e) = value else {
                    return Err(self.err(
                        *span,
                        "An object of a type convertible to 'object' is required",
                    ));
                };
                let t = self.value_expr(e)?;
                self.returns.push(t.ty);
                out.push(Stmt::Return(t.node));
            }
            AStmt::Foreach {
                ty,
                name,
                name_span,
                iter,
                body,
            } => {
                let it = self.value_expr(iter)?;
                let Some(elem) = it.ty.element() else {
                    return Err(self.err(
                        iter.span,
                        format!(
                            "foreach statement cannot operate on variables of type '{}'",
                            it.ty
                        ),
                    ));
                };
                let (var_ty, conv) = match ty {
                    Some(t) => {
                        let declared = self.type_of(t)?;
                        let conv = (declared != elem).then(|| declared.clone());
                        (declared, conv)
                    }
                    None => (elem, None),
                };
                let (slot, body) = self.scoped(|c| {
                    let slot = c.declare(name, *name_span, var_ty)?;
                    c.loops += 1;
                    let body = c.body(body);
                    c.loops -= 1;
                    Ok((slot, body?))
                })?;
                out.push(Stmt::Foreach {
                    slot,
                    conv,
                    iter: it.node,
                    body,
                });
            }
            AStmt::While { cond, body } => {
                let c = self.condition(cond)?;
                self.loops += 1;
                let body = self.body(body);
                self.loops -= 1;
                out.push(Stmt::Loop {
                    cond: Some(c),
                    step: Box::new([]),
                    body: body?,
                });
            }
            AStmt::For {
                init,
                cond,
                step,
                body,
            } => {
                let stmts = self.scoped(|c| {
                    let mut stmts = Vec::new();
                    for s in init {
                        c.stmt(s, &mut stmts)?;
                    }
                    let cond = match cond {
                        Some(e) => Some(c.condition(e)?),
                        None => None,
                    };
                    let step = step
                        .iter()
                        .map(|e| c.expr(e).map(|t| t.node))
                        .collect::<R<Vec<_>>>()?;
                    c.loops += 1;
                    let body = c.body(body);
                    c.loops -= 1;
                    stmts.push(Stmt::Loop {
                        cond,
                        step: step.into(),
                        body: body?,
                    });
                    Ok(stmts)
                })?;
                out.extend(stmts);
            }
            AStmt::Break(span) | AStmt::Continue(span) => {
                if self.loops == 0 {
                    return Err(
                        self.err(*span, "No enclosing loop out of which to break or continue")
                    );
                }
                out.push(if matches!(s, AStmt::Break(_)) {
                    Stmt::Break
                } else {
                    Stmt::Continue
                });
            }
        }
        Ok(())
    }

    fn condition(&mut self, e: &ast::Expr) -> R<Node> {
        let t = self.value_expr(e)?;
        match t.ty {
            Ty::Bool | Ty::Object | Ty::Json(_) => Ok(t.node),
            other => Err(self.err(
                e.span,
                format!("Cannot implicitly convert type '{other}' to 'bool'"),
            )),
        }
    }

    /// Converts `t` for storing into a `to` (declaration, assignment).
    fn coerce(&self, t: T, to: &Ty, nullable: bool, span: Span) -> R<Node> {
        match assignable(&t.ty, to, nullable) {
            Assign::Same => Ok(t.node),
            Assign::Convert => Ok(Node::Convert(Box::new(t.node), to.clone(), Mode::Implicit)),
            Assign::No => Err(self.err(
                span,
                format!("Cannot implicitly convert type '{}' to '{to}'", t.ty),
            )),
        }
    }

    // ---- expressions -----------------------------------------------------------------------

    /// An expression that must be a value (not a lambda).
    fn value_expr(&mut self, e: &ast::Expr) -> R<T> {
        if let ExprKind::Lambda { .. } = e.kind {
            return Err(self.err(e.span, "Cannot convert lambda expression to type 'object' because it is not a delegate type"));
        }
        self.expr(e)
    }

    /// Dispatches on the kind of expression. Kept small on purpose: it is on every level of
    /// recursion, so each arm's work (and stack) lives in its own method.
    fn expr(&mut self, e: &ast::Expr) -> R<T> {
        let s = e.span;
        match &e.kind {
            ExprKind::Null => Ok(T::new(Node::Const(Value::Null), Ty::Null)),
            ExprKind::Bool(b) => Ok(T::new(Node::Const(Value::Bool(*b)), Ty::Bool)),
            ExprKind::Int(v, long) => self.int_literal(*v, *long, false, s),
            ExprKind::Real(v) => Ok(T::new(Node::Const(Value::Double(*v)), Ty::Double)),
            ExprKind::Str(v) => Ok(T::new(Node::Const(Value::str(v)), Ty::String)),
            ExprKind::Char(c) => Ok(T::new(Node::Const(Value::Char(*c)), Ty::Char)),
            ExprKind::Interp(pieces) => self.interpolation(pieces),
            ExprKind::Name(_) | ExprKind::Member { .. } => self.name_or_member(e),
            ExprKind::Call { callee, args } => self.call(callee, args, s),
            ExprKind::Index { target, index, null_cond } => self.index(target, index, *null_cond, s),
            ExprKind::NullChain(inner) => {
                let t = self.expr(inner)?;
                Ok(T::new(Node::NullChain(Box::new(t.node)), t.ty))
            }
            ExprKind::Unary(op, operand) => self.unary(*op, operand, s),
            ExprKind::IncDec { target, increment, prefix } => self.inc_dec(target, *increment, *prefix, s),
            ExprKind::Binary(op, l, r) => self.binary(*op, l, r, s),
            ExprKind::Conditional(c, t, f) => self.conditional(c, t, f, s),
            ExprKind::Cast(tr, operand) => self.cast(tr, operand, s),
            ExprKind::Is(operand, tr) => self.is_as(operand, tr, Mode::Is),
            ExprKind::As(operand, tr) => self.is_as(operand, tr, Mode::As),
            ExprKind::Lambda { .. } => Err(self.err(
                s,
                "A lambda expression is only allowed as an argument of a LINQ method (Any, Where, Select…)",
            )),
            ExprKind::New { ty, args, init } => self.new_object(ty, args, init.as_deref()),
            ExprKind::NewArray { elem, items } => self.new_array(elem.as_ref(), items, s),
            ExprKind::NewArraySized { elem, size } => self.new_array_sized(elem, size),
            ExprKind::NewAnonymous(members) => self.new_anonymous(members),
            ExprKind::Assign { op, target, value } => self.assign(*op, target, value, s),
        }
    }

    fn interpolation(&mut self, pieces: &[ast::InterpPiece]) -> R<T> {
        let mut out = Vec::new();
        for p in pieces {
            let hole = match &p.hole {
                Some(h) => Some(ir::Hole {
                    node: self.value_expr(&h.expr)?.node,
                    align: h.align,
                    format: h.format.as_deref().map(Into::into),
                }),
                None => None,
            };
            out.push(ir::Piece {
                text: p.text.as_str().into(),
                hole,
            });
        }
        Ok(T::new(Node::Interp(out.into()), Ty::String))
    }

    fn name_or_member(&mut self, e: &ast::Expr) -> R<T> {
        match self.target(e)? {
            Target::Value(t) => Ok(t),
            Target::Class(c, span) => Err(self.err(
                span,
                format!(
                    "'{}' is a type, which is not valid in the given context",
                    class_name(c)
                ),
            )),
            Target::Namespace(ns, span) => Err(self.err(
                span,
                format!("'{ns}' is a namespace but is used like a variable"),
            )),
        }
    }

    fn index(&mut self, target: &ast::Expr, index: &ast::Expr, null_cond: bool, s: Span) -> R<T> {
        let t = self.value_expr(target)?;
        let i = self.value_expr(index)?;
        let ty = index_ty(&t.ty, &i.ty).map_err(|m| self.err(s, m))?;
        let recv = if null_cond {
            Node::NullGuard(Box::new(t.node))
        } else {
            t.node
        };
        Ok(T::new(Node::Index(Box::new(recv), Box::new(i.node)), ty))
    }

    fn inc_dec(&mut self, target: &ast::Expr, increment: bool, prefix: bool, s: Span) -> R<T> {
        let (slot, ty) = self.assignable_local(target)?;
        if !ty.is_numeric() && !ty.is_dynamic() {
            let op = if increment { "++" } else { "--" };
            return Err(self.err(
                s,
                format!("Operator '{op}' cannot be applied to operand of type '{ty}'"),
            ));
        }
        let assign = ir::Assign {
            slot,
            path: Box::new([]),
            op: Some(if increment { BinOp::Add } else { BinOp::Sub }),
            value: Node::Const(Value::Int(1)),
            conv: (!ty.is_dynamic()).then(|| ty.clone()),
            postfix: !prefix,
        };
        Ok(T::new(Node::Assign(Box::new(assign)), ty))
    }

    fn conditional(&mut self, c: &ast::Expr, t: &ast::Expr, f: &ast::Expr, s: Span) -> R<T> {
        let c = self.condition(c)?;
        let (t, f) = (self.value_expr(t)?, self.value_expr(f)?);
        let ty = join(&t.ty, &f.ty);
        let known = |t: &Ty| !t.is_dynamic() && !matches!(t, Ty::Json(_));
        if ty == Ty::Object && known(&t.ty) && known(&f.ty) {
            return Err(self.err(
                s,
                format!(
                    "Type of conditional expression cannot be determined because there is no implicit conversion between '{}' and '{}'",
                    t.ty, f.ty
                ),
            ));
        }
        Ok(T::new(
            Node::Cond(Box::new(c), Box::new(t.node), Box::new(f.node)),
            ty,
        ))
    }

    fn cast(&mut self, tr: &TypeRef, operand: &ast::Expr, s: Span) -> R<T> {
        let to = self.type_of(tr)?;
        let t = self.value_expr(operand)?;
        let invalid = matches!(
            (&t.ty, &to),
            (
                Ty::String,
                Ty::Int | Ty::Long | Ty::Double | Ty::Bool | Ty::Char | Ty::DateTime
            ) | (
                Ty::Int | Ty::Long | Ty::Double | Ty::Bool | Ty::Char,
                Ty::String
            ) | (Ty::Bool, Ty::Int | Ty::Long | Ty::Double)
                | (Ty::Int | Ty::Long | Ty::Double, Ty::Bool)
        );
        if invalid {
            return Err(self.err(s, format!("Cannot convert type '{}' to '{to}'", t.ty)));
        }
        Ok(T::new(
            Node::Convert(Box::new(t.node), to.clone(), Mode::Cast),
            to,
        ))
    }

    fn is_as(&mut self, operand: &ast::Expr, tr: &TypeRef, mode: Mode) -> R<T> {
        let to = self.type_of(tr)?;
        if mode == Mode::As && to.is_value_type() && !tr.nullable {
            return Err(self.err(
                tr.span,
                format!(
                    "The as operator must be used with a reference type or nullable type ('{to}' is a non-nullable value type)"
                ),
            ));
        }
        let t = self.value_expr(operand)?;
        let ty = if mode == Mode::Is {
            Ty::Bool
        } else {
            to.clone()
        };
        Ok(T::new(Node::Convert(Box::new(t.node), to, mode), ty))
    }

    fn new_object(&mut self, ty: &TypeRef, args: &[Arg], init: Option<&[InitItem]>) -> R<T> {
        let simple = ty.name.rsplit('.').next().unwrap_or(&ty.name);
        if matches!(simple, "Dictionary" | "List") && ty.array == 0 {
            return self.new_collection(ty, args, init.unwrap_or_default());
        }
        let base = self.new_plain(ty, args)?;
        match init {
            None => Ok(base),
            Some(items) => self.initialize(base, ty, items),
        }
    }

    /// `new Dictionary<string, T> { … }` (a JSON object: keys in insertion order) and
    /// `new List<T> { … }` (an array).
    fn new_collection(&mut self, ty: &TypeRef, args: &[Arg], init: &[InitItem]) -> R<T> {
        let t = self.type_of(ty)?;
        if let Some(a) = args.first() {
            return Err(self.err(
                a.span,
                format!(
                    "'{}' is created empty or from an initializer here; constructor arguments are not supported",
                    ty.name
                ),
            ));
        }
        match t {
            Ty::Array(elem) => {
                let mut nodes = Vec::with_capacity(init.len());
                for item in init {
                    match item {
                        InitItem::Add(values, span) if values.len() == 1 => {
                            let v = self.value_expr(&values[0])?;
                            nodes.push(self.coerce(v, &elem, true, *span)?);
                        }
                        other => {
                            return Err(self.err(
                                init_span(other),
                                "A list initializer takes one value per entry ({ a, b, c })",
                            ));
                        }
                    }
                }
                Ok(T::new(Node::NewArray(nodes.into()), Ty::Array(elem)))
            }
            obj @ Ty::Json(_) => {
                let base = T::new(Node::New(Class::JObject, Box::new([])), obj);
                self.initialize(base, ty, init)
            }
            _ => Err(self.err(ty.span, types::not_allowed(&ty.name))),
        }
    }

    /// An object or collection initializer on a JSON object or array.
    fn initialize(&mut self, base: T, ty: &TypeRef, items: &[InitItem]) -> R<T> {
        let (object, array) = (
            matches!(base.ty, Ty::Json(JKind::Object)),
            matches!(base.ty, Ty::Json(JKind::Array)),
        );
        let builder = base.ty == Ty::UriBuilder;
        let mut ops = Vec::with_capacity(items.len());
        for item in items {
            let op = match item {
                InitItem::Index(key, value) if object => {
                    let k = self.value_expr(key)?;
                    let k = self.coerce(k, &Ty::String, true, key.span)?;
                    ir::InitOp::Set(k, self.value_expr(value)?.node)
                }
                InitItem::Add(values, _) if object && values.len() == 2 => {
                    let k = self.value_expr(&values[0])?;
                    let k = self.coerce(k, &Ty::String, true, values[0].span)?;
                    ir::InitOp::Set(k, self.value_expr(&values[1])?.node)
                }
                InitItem::Add(values, _) if (object || array) && values.len() == 1 => {
                    ir::InitOp::Add(self.value_expr(&values[0])?.node)
                }
                InitItem::Member(name, span, value) if builder => {
                    let (m, want) = self.builder_member(name, *span)?;
                    let v = self.value_expr(value)?;
                    ir::InitOp::Member(m, self.coerce(v, &want, true, value.span)?)
                }
                other => {
                    let what = match other {
                        InitItem::Index(..) => "an indexer entry ([key] = value)".to_owned(),
                        InitItem::Add(..) => "an entry of this shape".to_owned(),
                        InitItem::Member(name, ..) => {
                            format!("a member assignment ({name} = value)")
                        }
                    };
                    return Err(self.err(
                        init_span(other),
                        format!(
                            "The initializer of '{}' cannot take {what}; JObject takes [\"key\"] = value, {{ \"key\", value }} or a JProperty, JArray and List<T> take values, Dictionary<string, T> takes [key] = value or {{ key, value }}",
                            ty.name
                        ),
                    ));
                }
            };
            ops.push(op);
        }
        Ok(T::new(
            Node::Init(Box::new(ir::Init {
                base: base.node,
                ops: ops.into(),
            })),
            base.ty,
        ))
    }

    /// `builder.Host = value`: the local takes a builder with that part changed.
    fn assign_builder_part(
        &mut self,
        local: &ast::Expr,
        name: &str,
        name_span: Span,
        value: &ast::Expr,
    ) -> R<T> {
        let (slot, local_ty) = self.assignable_local(local)?;
        let (m, want) = self.builder_member(name, name_span)?;
        let v = self.value_expr(value)?;
        let v = self.coerce(v, &want, true, value.span)?;
        let call = ir::Call {
            recv: Node::Local(slot),
            member: m,
            args: Box::new([v]),
            extra: builtins::Extra::default(),
            out: None,
        };
        let assign = ir::Assign {
            slot,
            path: Box::new([]),
            op: None,
            value: Node::Call(Box::new(call)),
            conv: None,
            postfix: false,
        };
        Ok(T::new(Node::Assign(Box::new(assign)), local_ty))
    }

    /// A `UriBuilder` part that can be set, and the type it takes.
    fn builder_member(&self, name: &str, span: Span) -> R<(Member, Ty)> {
        Member::from_name(name)
            .and_then(|m| builtins::net::settable(m).map(|t| (m, t)))
            .ok_or_else(|| {
                self.err(
                    span,
                    format!(
                        "'UriBuilder' has no settable member '{name}' (Scheme, Host, Port, Path, Query and Fragment can be set)"
                    ),
                )
            })
    }

    fn new_plain(&mut self, ty: &TypeRef, args: &[Arg]) -> R<T> {
        if !ty.args.is_empty() || ty.array > 0 {
            return Err(self.err(ty.span, types::not_allowed(&ty.name)));
        }
        let class = types::class(&ty.name)
            .ok_or_else(|| self.err(ty.span, types::not_allowed(&ty.name)))?;
        let args = self.plain_args(args, Member::Equals)?;
        let tys: Vec<Ty> = args.iter().map(|a| a.ty.clone()).collect();
        let ret = new_sig(
            class,
            &CallTys {
                args: &tys,
                targ: None,
                out: false,
            },
        )
        .map_err(|e| match e {
            SigErr::NotFound => self.err(
                ty.span,
                format!(
                    "Cannot create an instance of '{}' in policy expressions",
                    ty.name
                ),
            ),
            e => self.sig_err(
                e,
                &class_name(class),
                args.len(),
                ty.span,
                &Ty::Object,
                true,
            ),
        })?;
        Ok(T::new(
            Node::New(class, args.into_iter().map(|a| a.node).collect()),
            ret,
        ))
    }

    fn new_array(&mut self, elem: Option<&TypeRef>, items: &[ast::Expr], s: Span) -> R<T> {
        // `new byte[] { … }`: ints checked to fit a byte when the array is made.
        if let Some(t) = elem
            && t.array == 0
            && t.args.is_empty()
            && matches!(t.name.as_str(), "byte" | "Byte" | "System.Byte")
        {
            let mut nodes = Vec::with_capacity(items.len());
            for i in items {
                let v = self.value_expr(i)?;
                nodes.push(self.coerce(v, &Ty::Int, false, i.span)?);
            }
            let array = Node::NewArray(nodes.into());
            return Ok(T::new(
                Node::Convert(Box::new(array), Ty::Bytes, Mode::Cast),
                Ty::Bytes,
            ));
        }
        let items = items
            .iter()
            .map(|i| self.value_expr(i))
            .collect::<R<Vec<_>>>()?;
        let elem_ty = match elem {
            Some(t) => self.type_of(t)?,
            None => {
                let first = items.first().map_or(Ty::Object, |t| t.ty.clone());
                items.iter().skip(1).fold(first, |a, t| join(&a, &t.ty))
            }
        };
        let nodes = items
            .into_iter()
            .map(|t| self.coerce(t, &elem_ty, true, s))
            .collect::<R<Vec<_>>>()?;
        Ok(T::new(Node::NewArray(nodes.into()), Ty::array_of(elem_ty)))
    }

    /// `new { a = 1, b }`: a JSON object with those properties, in order (what
    /// `JsonConvert.SerializeObject` makes of an anonymous object in .NET).
    fn new_anonymous(&mut self, members: &[(String, Span, ast::Expr)]) -> R<T> {
        let mut ops = Vec::with_capacity(members.len());
        for (i, (name, span, value)) in members.iter().enumerate() {
            if members[..i].iter().any(|(n, ..)| n == name) {
                return Err(self.err(
                    *span,
                    format!("An anonymous type cannot have multiple properties with the same name ('{name}')"),
                ));
            }
            let v = self.value_expr(value)?;
            ops.push(ir::InitOp::Set(Node::Const(Value::str(name)), v.node));
        }
        Ok(T::new(
            Node::Init(Box::new(ir::Init {
                base: Node::New(Class::JObject, Box::new([])),
                ops: ops.into(),
            })),
            Ty::Json(JKind::Object),
        ))
    }

    /// `new T[n]`.
    fn new_array_sized(&mut self, elem: &TypeRef, size: &ast::Expr) -> R<T> {
        let n = self.value_expr(size)?;
        let n = self.coerce(n, &Ty::Int, false, size.span)?;
        let bytes = elem.array == 0
            && elem.args.is_empty()
            && matches!(elem.name.as_str(), "byte" | "Byte" | "System.Byte");
        let (fill, ty) = if bytes {
            (Value::Int(0), Ty::Bytes)
        } else {
            let t = self.type_of(elem)?;
            (builtins::context::default_of(&t), Ty::array_of(t))
        };
        Ok(T::new(
            Node::NewArraySized {
                size: Box::new(n),
                fill,
                bytes,
            },
            ty,
        ))
    }

    fn int_literal(&self, v: u64, long: bool, negative: bool, s: Span) -> R<T> {
        let signed = if negative {
            -i128::from(v)
        } else {
            i128::from(v)
        };
        if !long && let Ok(i) = i32::try_from(signed) {
            return Ok(T::new(Node::Const(Value::Int(i)), Ty::Int));
        }
        match i64::try_from(signed) {
            Ok(i) => Ok(T::new(Node::Const(Value::Long(i)), Ty::Long)),
            Err(_) => Err(self.err(s, "Integral constant is too large")),
        }
    }

    fn unary(&mut self, op: UnOp, operand: &ast::Expr, s: Span) -> R<T> {
        if let (UnOp::Neg, ExprKind::Int(v, long)) = (op, &operand.kind) {
            return self.int_literal(*v, *long, true, s);
        }
        let t = self.value_expr(operand)?;
        let dynamic = t.ty.is_dynamic() || matches!(t.ty, Ty::Json(_));
        let ty = match op {
            UnOp::Not if t.ty == Ty::Bool || dynamic => Ty::Bool,
            UnOp::Neg | UnOp::Plus if t.ty.is_numeric() => {
                promote(&t.ty, &Ty::Int).unwrap_or(Ty::Double)
            }
            UnOp::BitNot if matches!(t.ty, Ty::Int | Ty::Long | Ty::Char) => {
                promote(&t.ty, &Ty::Int).unwrap_or(Ty::Int)
            }
            _ if dynamic => Ty::Object,
            _ => {
                let text = match op {
                    UnOp::Not => "!",
                    UnOp::Neg => "-",
                    UnOp::Plus => "+",
                    UnOp::BitNot => "~",
                };
                return Err(self.err(
                    s,
                    format!(
                        "Operator '{text}' cannot be applied to operand of type '{}'",
                        t.ty
                    ),
                ));
            }
        };
        Ok(T::new(Node::Unary(op, Box::new(t.node)), ty))
    }

    fn binary(&mut self, op: BinOp, l: &ast::Expr, r: &ast::Expr, s: Span) -> R<T> {
        let (a, b) = (self.value_expr(l)?, self.value_expr(r)?);
        let (la, lb) = (Box::new(a.node), Box::new(b.node));
        Ok(match op {
            BinOp::And | BinOp::Or => {
                for (t, e) in [(&a.ty, l), (&b.ty, r)] {
                    if !matches!(t, Ty::Bool | Ty::Object | Ty::Json(_)) {
                        return Err(self.err(
                            e.span,
                            format!(
                                "Operator '{}' cannot be applied to operands of type '{}' and '{}'",
                                op.text(),
                                a.ty,
                                b.ty
                            ),
                        ));
                    }
                }
                T::new(
                    if op == BinOp::And {
                        Node::And(la, lb)
                    } else {
                        Node::Or(la, lb)
                    },
                    Ty::Bool,
                )
            }
            BinOp::Coalesce => {
                // Static types don't track nullability (`x?.Length` is an `int?`), so `??`
                // is accepted on any left operand.
                let ty = join(&a.ty, &b.ty);
                T::new(Node::Coalesce(la, lb), ty)
            }
            _ => {
                let ty = binary_ty(op, &a.ty, &b.ty).ok_or_else(|| {
                    self.err(
                        s,
                        format!(
                            "Operator '{}' cannot be applied to operands of type '{}' and '{}'",
                            op.text(),
                            a.ty,
                            b.ty
                        ),
                    )
                })?;
                if op == BinOp::Add && a.ty == Ty::XNamespace && b.ty == Ty::String {
                    // `ns + "local"`: the `XName` `{ns}local`.
                    let brace = |s: &str| Node::Const(Value::str(s));
                    let pieces = [brace("{"), *la, brace("}"), *lb];
                    return Ok(T::new(Node::Concat(pieces.into()), Ty::String));
                }
                if op == BinOp::Add && ty == Ty::String {
                    // `a + "@" + b` is one concatenation of three pieces, not two of two.
                    let mut pieces = Vec::new();
                    for side in [*la, *lb] {
                        match side {
                            Node::Concat(inner) => pieces.extend(inner.into_vec()),
                            other => pieces.push(other),
                        }
                    }
                    return Ok(T::new(Node::Concat(pieces.into()), ty));
                }
                T::new(Node::Binary(op, la, lb), ty)
            }
        })
    }

    /// The local a `++`, `--` or assignment writes to.
    fn assignable_local(&self, target: &ast::Expr) -> R<(u32, Ty)> {
        match &target.kind {
            ExprKind::Name(n) => match self.lookup(n) {
                Some(l) => Ok((l.slot, l.ty.clone())),
                None if n == "context" => Err(self.err(target.span, "'context' is read only")),
                None => Err(self.err(target.span, format!("The name '{n}' does not exist in the current context"))),
            },
            _ => Err(self.err(
                target.span,
                "The left-hand side of an assignment must be a local variable or an element of a JSON token held in one",
            )),
        }
    }

    fn assign(
        &mut self,
        op: Option<BinOp>,
        target: &ast::Expr,
        value: &ast::Expr,
        s: Span,
    ) -> R<T> {
        if let ExprKind::Member {
            target: inner,
            name,
            name_span,
            null_cond: false,
            ..
        } = &target.kind
            && let ExprKind::Name(local) = &inner.kind
            && self.lookup(local).is_some_and(|l| l.ty == Ty::UriBuilder)
            && op.is_none()
        {
            return self.assign_builder_part(inner, name, *name_span, value);
        }
        // Peel `local[k1][k2]…`.
        let mut path = Vec::new();
        let mut root = target;
        while let ExprKind::Index {
            target: inner,
            index,
            null_cond: false,
        } = &root.kind
        {
            path.push(index.as_ref());
            root = inner;
        }
        path.reverse();
        let (slot, local_ty) = self.assignable_local(root)?;
        let v = self.value_expr(value)?;
        if path.is_empty() {
            let result_ty = match op {
                Some(op) => binary_ty(op, &local_ty, &v.ty).ok_or_else(|| {
                    self.err(s, format!("Operator '{}' cannot be applied to operands of type '{local_ty}' and '{}'", op.text(), v.ty))
                })?,
                None => v.ty.clone(),
            };
            // C# compound assignment converts the result back to the variable's type.
            let conv = match (op, assignable(&result_ty, &local_ty, true)) {
                (_, Assign::Same) if result_ty == local_ty || local_ty == Ty::Object => None,
                (_, Assign::Same | Assign::Convert) => Some(local_ty.clone()),
                (Some(_), Assign::No) if result_ty.is_numeric() && local_ty.is_numeric() => {
                    Some(local_ty.clone())
                }
                (_, Assign::No) => {
                    return Err(self.err(
                        value.span,
                        format!("Cannot implicitly convert type '{result_ty}' to '{local_ty}'"),
                    ));
                }
            };
            let assign = ir::Assign {
                slot,
                path: Box::new([]),
                op,
                value: v.node,
                conv,
                postfix: false,
            };
            return Ok(T::new(Node::Assign(Box::new(assign)), local_ty));
        }
        if !matches!(local_ty, Ty::Json(_) | Ty::Object) {
            return Err(self.err(
                target.span,
                format!(
                    "Property or indexer of '{local_ty}' cannot be assigned to -- it is read only"
                ),
            ));
        }
        let keys = path
            .iter()
            .map(|k| self.value_expr(k).map(|t| t.node))
            .collect::<R<Vec<_>>>()?;
        let assign = ir::Assign {
            slot,
            path: keys.into(),
            op,
            value: v.node,
            conv: None,
            postfix: false,
        };
        Ok(T::new(
            Node::Assign(Box::new(assign)),
            Ty::Json(types::JKind::Token),
        ))
    }

    /// Resolves a name or member access: a value, a class, or a namespace on the way to one.
    fn target(&mut self, e: &ast::Expr) -> R<Target> {
        match &e.kind {
            ExprKind::Name(n) => {
                if let Some(l) = self.lookup(n) {
                    return Ok(Target::Value(T::new(Node::Local(l.slot), l.ty.clone())));
                }
                if n == "context" {
                    return Ok(Target::Value(T::new(
                        Node::Context,
                        Ty::Ctx(CtxObj::Context),
                    )));
                }
                if let Some(c) = types::class(n) {
                    return Ok(Target::Class(c, e.span));
                }
                if types::is_namespace(n) {
                    return Ok(Target::Namespace(n.clone(), e.span));
                }
                Err(self.err(
                    e.span,
                    format!("The name '{n}' does not exist in the current context"),
                ))
            }
            ExprKind::Member {
                target,
                name,
                name_span,
                type_args,
                null_cond,
            } => {
                if !type_args.is_empty() {
                    return Err(self.err(
                        *name_span,
                        format!("'{name}' is not a generic method; did you mean to call it?"),
                    ));
                }
                let full_span = e.span;
                match self.target(target)? {
                    Target::Namespace(ns, _) => {
                        let full = format!("{ns}.{name}");
                        if let Some(c) = types::class(&full) {
                            Ok(Target::Class(c, full_span))
                        } else if types::is_namespace(&full) {
                            Ok(Target::Namespace(full, full_span))
                        } else {
                            Err(self.err(full_span, types::not_allowed(&full)))
                        }
                    }
                    Target::Class(c, _) => {
                        let m = Member::from_name(name);
                        let ty = m.and_then(|m| static_prop_ty(c, m));
                        match (m, ty) {
                            (Some(m), Some(ty)) => {
                                Ok(Target::Value(T::new(Node::StaticProp(c, m), ty)))
                            }
                            _ => Err(self.err(
                                *name_span,
                                format!(
                                    "'{}' does not contain a definition for '{name}'",
                                    class_name(c)
                                ),
                            )),
                        }
                    }
                    Target::Value(t) => {
                        let m = Member::from_name(name);
                        let ty = m.and_then(|m| prop_ty(&t.ty, m));
                        match (m, ty) {
                            // An `XNamespace` is held as its URI.
                            (Some(Member::NamespaceName), Some(ty)) if t.ty == Ty::XNamespace => {
                                Ok(Target::Value(T::new(t.node, ty)))
                            }
                            (Some(m), Some(ty)) => {
                                let recv = if *null_cond {
                                    Node::NullGuard(Box::new(t.node))
                                } else {
                                    t.node
                                };
                                Ok(Target::Value(T::new(Node::Prop(Box::new(recv), m), ty)))
                            }
                            _ => Err(self.err(*name_span, no_definition(&t.ty, name))),
                        }
                    }
                }
            }
            _ => Ok(Target::Value(self.value_expr(e)?)),
        }
    }

    fn sig_err(
        &self,
        e: SigErr,
        name: &str,
        n: usize,
        span: Span,
        ty: &Ty,
        is_static: bool,
    ) -> CompileError {
        let message = match e {
            SigErr::NotFound if is_static => {
                format!("'{name}' does not contain a definition for the method called here")
            }
            SigErr::NotFound => no_definition(ty, name),
            SigErr::Arity => format!("No overload for method '{name}' takes {n} arguments"),
            SigErr::Types => {
                format!("The best overloaded method match for '{name}' has some invalid arguments")
            }
            SigErr::Other(m) => m,
        };
        self.err(span, message)
    }

    /// Arguments with named ones put in place; lambdas and `out` are refused here.
    fn plain_args(&mut self, args: &[Arg], m: Member) -> R<Vec<T>> {
        let ordered = self.order_args(args, m)?;
        ordered
            .into_iter()
            .map(|a| match &a.kind {
                ArgKind::Value(e) => self.value_expr(e),
                _ => Err(self.err(a.span, "An 'out' argument is not expected here")),
            })
            .collect()
    }

    fn order_args<'a>(&self, args: &'a [Arg], m: Member) -> R<Vec<&'a Arg>> {
        if args.iter().all(|a| a.name.is_none()) {
            return Ok(args.iter().collect());
        }
        let names = param_names(m);
        let mut slots: Vec<Option<&Arg>> = vec![None; args.len().max(names.len())];
        let mut positional = 0;
        for a in args {
            let pos = match &a.name {
                None => {
                    positional += 1;
                    positional - 1
                }
                Some((name, span)) => names.iter().position(|n| n == name).ok_or_else(|| {
                    self.err(
                        *span,
                        format!(
                            "The best overload for '{}' does not have a parameter named '{name}'",
                            m.name()
                        ),
                    )
                })?,
            };
            match slots.get_mut(pos) {
                Some(slot @ None) => *slot = Some(a),
                _ => return Err(self.err(a.span, "Named argument specifies a parameter for which a positional argument has already been given")),
            }
        }
        let filled: Vec<&Arg> = slots.iter().map_while(|s| *s).collect();
        if filled.len() != args.len() {
            return Err(self.err(
                args.first().map_or(Span::default(), |a| a.span),
                "Named arguments must fill the parameters in order",
            ));
        }
        Ok(filled)
    }

    fn call(&mut self, callee: &ast::Expr, args: &[Arg], s: Span) -> R<T> {
        let ExprKind::Member {
            target,
            name,
            name_span,
            type_args,
            null_cond,
        } = &callee.kind
        else {
            return Err(self.err(callee.span, "Method name expected"));
        };
        let Some(m) = Member::from_name(name) else {
            return match self.target(target)? {
                Target::Value(t) => Err(self.err(*name_span, no_definition(&t.ty, name))),
                Target::Class(c, _) => Err(self.err(
                    *name_span,
                    format!(
                        "'{}' does not contain a definition for '{name}'",
                        class_name(c)
                    ),
                )),
                Target::Namespace(ns, _) => {
                    Err(self.err(callee.span, types::not_allowed(&format!("{ns}.{name}"))))
                }
            };
        };
        let targ = match type_args.as_slice() {
            [] => None,
            [t] => Some(self.type_of(t)?),
            _ => return Err(self.err(*name_span, format!("'{name}' takes one type argument"))),
        };
        // `o.Property("k").Remove()` / `o.Property("k")?.Remove()` on a token in a local:
        // Newtonsoft's way of removing a property, the same as `o.Remove("k")`.
        if m == Member::Remove
            && args.is_empty()
            && let ExprKind::Call {
                callee: inner,
                args: inner_args,
            } = &target.kind
            && let ExprKind::Member {
                target: object,
                name: inner_name,
                type_args: inner_targs,
                ..
            } = &inner.kind
            && inner_name == "Property"
            && inner_targs.is_empty()
            && let [key] = inner_args.as_slice()
            && matches!(key.kind, ArgKind::Value(_))
            && key.name.is_none()
            && let Some((slot, path)) = self.json_place(object)
        {
            return self.json_mutation(slot, &path, Member::Remove, &[key], s);
        }
        let ordered = self.order_args(args, m)?;
        if matches!(m, Member::Add | Member::Remove)
            && let Some((slot, path)) = self.json_place(target)
        {
            return self.json_mutation(slot, &path, m, &ordered, s);
        }
        if m == Member::Add
            && let ExprKind::Name(n) = &target.kind
            && let Some(Local {
                slot,
                ty: Ty::Array(elem),
                ..
            }) = self.lookup(n)
            && let [one] = ordered.as_slice()
        {
            let (slot, elem) = (*slot, (**elem).clone());
            return self.list_add(slot, &elem, one);
        }
        let recv = self.target(target)?;
        // `out` goes last.
        let out_arg = match ordered.last().map(|a| &a.kind) {
            Some(ArgKind::Out(_) | ArgKind::OutDecl { .. }) => ordered.last().copied(),
            _ => None,
        };
        let value_args = if out_arg.is_some() {
            &ordered[..ordered.len() - 1]
        } else {
            &ordered[..]
        };
        if let Some(a) = value_args
            .iter()
            .find(|a| !matches!(a.kind, ArgKind::Value(_)))
        {
            return Err(self.err(a.span, "Only the last argument may be 'out'"));
        }
        let has_lambda = value_args.iter().any(
            |a| matches!(&a.kind, ArgKind::Value(e) if matches!(e.kind, ExprKind::Lambda { .. })),
        );

        let site = CallSite {
            name,
            name_span: *name_span,
            member: m,
            targ: targ.as_ref(),
            null_cond: *null_cond,
            value_args,
            out_arg,
            has_lambda,
            span: s,
        };
        match recv {
            Target::Namespace(ns, _) => {
                Err(self.err(callee.span, types::not_allowed(&format!("{ns}.{name}"))))
            }
            Target::Class(class, _) => self.static_call(class, site),
            Target::Value(t) => self.method_call(t, site),
        }
    }

    fn static_call(&mut self, class: Class, site: CallSite<'_>) -> R<T> {
        let CallSite {
            name,
            name_span,
            member: m,
            targ,
            value_args,
            out_arg,
            has_lambda,
            span: s,
            ..
        } = site;
        // `Array.Exists(a, x => …)` and its kin are LINQ over `a`.
        if class == Class::Array
            && let [array, predicate] = value_args
            && let Some(op) = match m {
                Member::Exists => Some(Member::Any),
                Member::TrueForAll => Some(Member::All),
                Member::Find => Some(Member::FirstOrDefault),
                Member::FindLast => Some(Member::LastOrDefault),
                Member::FindAll => Some(Member::Where),
                _ => None,
            }
            && let ArgKind::Value(e) = &array.kind
        {
            let recv = self.value_expr(e)?;
            let one = [*predicate];
            let linq_site = CallSite {
                name,
                name_span,
                member: op,
                targ: None,
                null_cond: false,
                value_args: &one,
                out_arg: None,
                has_lambda: true,
                span: s,
            };
            return self.linq(recv, &linq_site);
        }
        if has_lambda {
            return Err(self.err(s, "Cannot convert lambda expression to type 'object' because it is not a delegate type"));
        }
        let compiled = value_args
            .iter()
            .map(|a| self.arg_value(a))
            .collect::<R<Vec<_>>>()?;
        let mut tys: Vec<Ty> = compiled.iter().map(|a| a.ty.clone()).collect();
        if out_arg.is_some() {
            tys.push(Ty::Object);
        }
        let call_tys = CallTys {
            args: &tys,
            targ,
            out: out_arg.is_some(),
        };
        let ret = static_sig(class, m, &call_tys).map_err(|e| match e {
            SigErr::NotFound => self.err(
                name_span,
                format!(
                    "'{}' does not contain a definition for '{name}'",
                    class_name(class)
                ),
            ),
            e => self.sig_err(e, name, tys.len(), s, &Ty::Object, true),
        })?;
        let out = match out_arg {
            Some(a) => Some(self.out_slot(a, out_ty(None, Some(class), m))?),
            None => None,
        };
        let extra = Extra {
            targ: targ.cloned(),
            regex: self.literal_regex(class, m, &compiled, value_args)?,
        };
        let call = ir::StaticCall {
            class,
            member: m,
            args: compiled.into_iter().map(|a| a.node).collect(),
            extra,
            out,
        };
        Ok(T::new(Node::StaticCall(Box::new(call)), ret))
    }

    fn method_call(&mut self, t: T, site: CallSite<'_>) -> R<T> {
        let m = site.member;
        let linq_ok = linq::lambda_arity(m).is_some() && t.ty.element().is_some();
        if site.has_lambda || (linq_ok && !has_method(&t.ty, m)) {
            if !linq_ok {
                return Err(self.err(site.name_span, no_definition(&t.ty, site.name)));
            }
            return self.linq(t, &site);
        }
        let CallSite {
            name,
            name_span,
            targ,
            null_cond,
            value_args,
            out_arg,
            ..
        } = site;
        let compiled = value_args
            .iter()
            .map(|a| self.arg_value(a))
            .collect::<R<Vec<_>>>()?;
        let mut tys: Vec<Ty> = compiled.iter().map(|a| a.ty.clone()).collect();
        if out_arg.is_some() {
            tys.push(Ty::Object);
        }
        let call_tys = CallTys {
            args: &tys,
            targ,
            out: out_arg.is_some(),
        };
        let ret = method_sig(&t.ty, m, &call_tys)
            .map_err(|e| self.sig_err(e, name, tys.len(), name_span, &t.ty, false))?;
        let out = match out_arg {
            Some(a) => Some(self.out_slot(a, out_ty(Some(&t.ty), None, m))?),
            None => None,
        };
        let recv = if null_cond {
            Node::NullGuard(Box::new(t.node))
        } else {
            t.node
        };
        let call = ir::Call {
            recv,
            member: m,
            args: compiled.into_iter().map(|a| a.node).collect(),
            extra: Extra {
                targ: targ.cloned(),
                regex: None,
            },
            out,
        };
        Ok(T::new(Node::Call(Box::new(call)), ret))
    }

    /// `local` or `local[k]…` where the local holds a JSON token: a place `Add`/`Remove` can
    /// change in place.
    fn json_place<'e>(&self, target: &'e ast::Expr) -> Option<(u32, Vec<&'e ast::Expr>)> {
        let mut path = Vec::new();
        let mut root = target;
        while let ExprKind::Index {
            target: inner,
            index,
            null_cond: false,
        } = &root.kind
        {
            path.push(index.as_ref());
            root = inner;
        }
        path.reverse();
        let ExprKind::Name(n) = &root.kind else {
            return None;
        };
        let local = self.lookup(n)?;
        matches!(local.ty, Ty::Json(_)).then_some((local.slot, path))
    }

    /// `token.Add(name, value)`, `token.Add(item)`, `token.Remove(name)` on a token in a local.
    fn json_mutation(
        &mut self,
        slot: u32,
        path: &[&ast::Expr],
        m: Member,
        args: &[&Arg],
        s: Span,
    ) -> R<T> {
        let keys = path
            .iter()
            .map(|k| self.value_expr(k).map(|t| t.node))
            .collect::<R<Vec<_>>>()?;
        let args = args
            .iter()
            .map(|a| self.arg_value(a))
            .collect::<R<Vec<_>>>()?;
        let ok = match m {
            Member::Add => matches!(args.len(), 1 | 2),
            _ => args.len() == 1,
        };
        if !ok {
            return Err(self.err(
                s,
                format!(
                    "No overload for method '{}' takes {} arguments",
                    m.name(),
                    args.len()
                ),
            ));
        }
        let ty = if m == Member::Remove {
            Ty::Bool
        } else {
            Ty::Object
        };
        let node = ir::Mutate {
            slot,
            path: keys.into(),
            member: m,
            args: args.into_iter().map(|a| a.node).collect(),
        };
        Ok(T::new(Node::Mutate(Box::new(node)), ty))
    }

    /// `list.Add(item)` on a `List<T>` (or array) held in a local: the local takes the list with
    /// the item appended.
    fn list_add(&mut self, slot: u32, elem: &Ty, arg: &Arg) -> R<T> {
        let v = self.arg_value(arg)?;
        let v = self.coerce(v, elem, true, arg.span)?;
        let call = ir::Call {
            recv: Node::Local(slot),
            member: Member::Add,
            args: Box::new([v]),
            extra: Extra::default(),
            out: None,
        };
        let assign = ir::Assign {
            slot,
            path: Box::new([]),
            op: None,
            value: Node::Call(Box::new(call)),
            conv: None,
            postfix: false,
        };
        Ok(T::new(Node::Assign(Box::new(assign)), Ty::Object))
    }

    fn arg_value(&mut self, a: &Arg) -> R<T> {
        match &a.kind {
            ArgKind::Value(e) => self.value_expr(e),
            _ => Err(self.err(a.span, "Only the last argument may be 'out'")),
        }
    }

    /// The slot an `out` argument writes: a new variable (`out var x`) or an existing local.
    fn out_slot(&mut self, a: &Arg, ty: Option<Ty>) -> R<u32> {
        let Some(ty) = ty else {
            return Err(self.err(a.span, "This method has no 'out' parameter"));
        };
        match &a.kind {
            ArgKind::OutDecl {
                ty: declared,
                name,
                name_span,
            } => {
                if let Some(d) = declared {
                    let d = self.type_of(d)?;
                    if d != ty && d != Ty::Object {
                        return Err(self.err(
                            a.span,
                            format!("Argument: cannot convert from 'out {d}' to 'out {ty}'"),
                        ));
                    }
                }
                self.declare(name, *name_span, ty)
            }
            ArgKind::Out(e) => {
                let (slot, local_ty) = self.assignable_local(e)?;
                if local_ty != ty && local_ty != Ty::Object {
                    return Err(self.err(
                        a.span,
                        format!("Argument: cannot convert from 'out {local_ty}' to 'out {ty}'"),
                    ));
                }
                Ok(slot)
            }
            ArgKind::Value(_) => {
                Err(self.err(a.span, "Argument must be passed with the 'out' keyword"))
            }
        }
    }

    /// `Regex.X(input, "literal"[, …, RegexOptions.Y])`: compile the pattern now, so a bad one
    /// is refused when the policy is saved and a good one is not recompiled per request.
    fn literal_regex(
        &self,
        class: Class,
        m: Member,
        args: &[T],
        src_args: &[&Arg],
    ) -> R<Option<Arc<builtins::regex::Pattern>>> {
        if class != Class::Regex || m == Member::Escape {
            return Ok(None);
        }
        let Some(Node::Const(Value::String(pattern))) = args.get(1).map(|a| &a.node) else {
            return Ok(None);
        };
        let options_at = if m == Member::Replace { 3 } else { 2 };
        let options = match args.get(options_at).map(|a| &a.node) {
            None => 0,
            Some(Node::StaticProp(c, om)) => match builtins::enum_value(*c, *om) {
                Some((_, v)) => v,
                None => return Ok(None),
            },
            Some(_) => return Ok(None),
        };
        match builtins::regex::build(pattern, options) {
            Ok(re) => Ok(Some(Arc::new(re))),
            Err(msg) => Err(self.err(src_args.get(1).map_or(Span::default(), |a| a.span), msg)),
        }
    }

    fn linq(&mut self, t: T, site: &CallSite<'_>) -> R<T> {
        let CallSite {
            name,
            name_span,
            member: m,
            null_cond,
            value_args: args,
            span: s,
            ..
        } = *site;
        let elem = t.ty.element().unwrap_or(Ty::Object);
        let needs = linq::lambda_arity(m).flatten();
        let mut lambda = None;
        let mut other = None;
        let mut other_tys = Vec::new();
        for a in args {
            let ArgKind::Value(e) = &a.kind else { continue };
            if let ExprKind::Lambda { params, body } = &e.kind {
                if needs.is_none() || lambda.is_some() {
                    return Err(self.err(a.span, format!("'{name}' does not take a lambda here")));
                }
                let [(param, param_span)] = params.as_slice() else {
                    return Err(self.err(
                        e.span,
                        format!("The lambda for '{name}' must take exactly one parameter"),
                    ));
                };
                let (slot, body) = self.scoped(|c| {
                    let slot = c.declare(param, *param_span, elem.clone())?;
                    Ok((slot, c.value_expr(body)?))
                })?;
                lambda = Some((slot, body));
            } else {
                if other.is_some() {
                    return Err(self.err(
                        a.span,
                        format!(
                            "No overload for method '{name}' takes {} arguments",
                            args.len()
                        ),
                    ));
                }
                let v = self.value_expr(e)?;
                other_tys.push(v.ty.clone());
                other = Some(v.node);
            }
        }
        if needs == Some(true) && lambda.is_none() {
            return Err(self.err(
                s,
                format!(
                    "No overload for method '{name}' takes {} arguments",
                    args.len()
                ),
            ));
        }
        let ret = linq::sig(
            m,
            &elem,
            lambda.as_ref().map(|(_, b): &(u32, T)| &b.ty),
            &other_tys,
        )
        .map_err(|e| self.sig_err(e, name, args.len(), name_span, &t.ty, false))?;
        let recv = if null_cond {
            Node::NullGuard(Box::new(t.node))
        } else {
            t.node
        };
        let node = ir::Linq {
            recv,
            op: m,
            lambda: lambda.map(|(slot, b)| (slot, b.node)),
            arg: other,
        };
        let mut node = Node::Linq(Box::new(node));
        // `…OrDefault` of numbers, booleans, dates: their default, as in .NET, not null.
        if matches!(
            m,
            Member::FirstOrDefault | Member::LastOrDefault | Member::SingleOrDefault
        ) && ret.is_value_type()
        {
            node = Node::Coalesce(
                Box::new(node),
                Box::new(Node::Const(builtins::context::default_of(&ret))),
            );
        }
        Ok(T::new(node, ret))
    }
}

/// Whether the type has its own method `m` (which wins over LINQ's).
fn has_method(ty: &Ty, m: Member) -> bool {
    if ty.is_dynamic() {
        return matches!(m, Member::Contains | Member::Equals | Member::ToString);
    }
    !matches!(
        method_sig(
            ty,
            m,
            &CallTys {
                args: &[],
                targ: None,
                out: false
            }
        ),
        Err(SigErr::NotFound)
    ) && !matches!(
        method_sig(
            ty,
            m,
            &CallTys {
                args: &[Ty::Object],
                targ: None,
                out: false
            }
        ),
        Err(SigErr::NotFound)
    )
}

fn no_definition(ty: &Ty, name: &str) -> String {
    format!("'{ty}' does not contain a definition for '{name}'")
}

fn class_name(c: Class) -> String {
    match c {
        Class::Int => "int".into(),
        Class::Long => "long".into(),
        Class::Double => "double".into(),
        Class::Bool => "bool".into(),
        Class::Char => "char".into(),
        Class::String => "string".into(),
        Class::Hmac(alg) => format!("HMAC{}", alg.name()),
        Class::Hash(alg) => alg.name().into(),
        other => format!("{other:?}"),
    }
}

/// The static type of `a op b`; `None` when C# would refuse it.
fn binary_ty(op: BinOp, a: &Ty, b: &Ty) -> Option<Ty> {
    use BinOp as B;
    let loose = |t: &Ty| t.is_dynamic() || matches!(t, Ty::Json(_));
    let dynamic = loose(a) || loose(b);
    match op {
        B::Add if *a == Ty::String || *b == Ty::String => Some(Ty::String),
        B::Add | B::Sub => match (a, b) {
            (Ty::DateTime, Ty::TimeSpan) => Some(Ty::DateTime),
            (Ty::TimeSpan, Ty::TimeSpan) => Some(Ty::TimeSpan),
            (Ty::DateTime, Ty::DateTime) if op == B::Sub => Some(Ty::TimeSpan),
            _ if dynamic => Some(Ty::Object),
            _ => promote(a, b),
        },
        B::Mul | B::Div | B::Rem => {
            if dynamic {
                Some(Ty::Object)
            } else {
                promote(a, b)
            }
        }
        B::Lt | B::Gt | B::Le | B::Ge => {
            let ok = dynamic
                || promote(a, b).is_some()
                || matches!(
                    (a, b),
                    (Ty::DateTime, Ty::DateTime) | (Ty::TimeSpan, Ty::TimeSpan)
                );
            ok.then_some(Ty::Bool)
        }
        B::Eq | B::Ne => {
            let category = |t: &Ty| match t {
                t if t.is_numeric() => Some(0),
                Ty::String => Some(1),
                Ty::Bool => Some(2),
                Ty::DateTime => Some(3),
                Ty::TimeSpan => Some(4),
                Ty::Guid => Some(5),
                _ => None,
            };
            match (category(a), category(b)) {
                (Some(x), Some(y)) if x != y => None,
                _ => Some(Ty::Bool),
            }
        }
        B::BitAnd | B::BitOr | B::BitXor => match (a, b) {
            (Ty::Bool, Ty::Bool) => Some(Ty::Bool),
            (Ty::Enum(x), Ty::Enum(y)) if x == y => Some(a.clone()),
            _ if dynamic => Some(Ty::Object),
            _ => promote(a, b).filter(|t| *t != Ty::Double),
        },
        B::And | B::Or | B::Coalesce => Some(Ty::Bool),
    }
}

fn init_span(item: &InitItem) -> Span {
    match item {
        InitItem::Index(k, _) => k.span,
        InitItem::Add(_, span) => *span,
        InitItem::Member(_, span, value) => span.to(value.span),
    }
}
