//! The syntax tree. Every node carries the span it was parsed from.
//!
//! The tree is generic (blocks, attributes, and the `import`, `param` and `step`
//! statements): which blocks and attributes exist where is the checker's business.

use crate::diag::{FileId, Span};

/// One parsed file.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// The file the document came from.
    pub file: FileId,
    /// Top-level statements in source order.
    pub stmts: Vec<Stmt>,
}

/// A statement: at top level or inside a block.
#[derive(Debug, Clone, PartialEq)]
pub enum Stmt {
    /// `import "path"`
    Import(Import),
    /// `param name : type = default`
    Param(ParamDecl),
    /// `step name = action(args) modifiers...`
    Step(StepDecl),
    /// `key = value`
    Attr(Attr),
    /// `name labels... { stmts }`
    Block(Block),
}

impl Stmt {
    /// The statement's whole span.
    pub fn span(&self) -> Span {
        match self {
            Stmt::Import(s) => s.span,
            Stmt::Param(s) => s.span,
            Stmt::Step(s) => s.span,
            Stmt::Attr(s) => s.span,
            Stmt::Block(s) => s.span,
        }
    }
}

/// A name, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ident {
    /// The text.
    pub name: String,
    /// Where it is.
    pub span: Span,
}

/// A string literal with escapes resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrLit {
    /// The value, escapes resolved.
    pub value: String,
    /// The span including the quotes.
    pub span: Span,
}

/// `import "std/datapower"`
#[derive(Debug, Clone, PartialEq)]
pub struct Import {
    /// The imported path.
    pub path: StrLit,
    /// The whole statement.
    pub span: Span,
}

/// `param quiesce : duration = none`
#[derive(Debug, Clone, PartialEq)]
pub struct ParamDecl {
    /// The parameter name.
    pub name: Ident,
    /// The type name.
    pub ty: Ident,
    /// The default, if any (`none` makes the parameter optional).
    pub default: Option<Expr>,
    /// The whole statement.
    pub span: Span,
}

/// `step backup = dp.secure_backup(device, cert = cert) undo store.discard()`
#[derive(Debug, Clone, PartialEq)]
pub struct StepDecl {
    /// The step name.
    pub name: Ident,
    /// The action it runs.
    pub call: Call,
    /// Modifiers in source order.
    pub modifiers: Vec<Modifier>,
    /// The whole statement.
    pub span: Span,
}

/// A step modifier.
#[derive(Debug, Clone, PartialEq)]
pub enum Modifier {
    /// `when PARAM`: the step exists only when the parameter is set.
    When(Ident, Span),
    /// `unless PARAM`: the step exists only when the parameter is not set (a bool: false).
    Unless(Ident, Span),
    /// `always`: the step runs whatever happened before it.
    Always(Span),
    /// `after a, b`: explicit predecessors.
    After(Vec<Ident>, Span),
    /// `timeout 10m`
    Timeout(Expr, Span),
    /// `undo action(...)`: what `rollback` runs.
    Undo(Call, Span),
    /// `on_failure POLICY`
    OnFailure(Expr, Span),
}

impl Modifier {
    /// The modifier's whole span.
    pub fn span(&self) -> Span {
        match self {
            Modifier::When(_, s)
            | Modifier::Unless(_, s)
            | Modifier::Always(s)
            | Modifier::After(_, s)
            | Modifier::Timeout(_, s)
            | Modifier::Undo(_, s)
            | Modifier::OnFailure(_, s) => *s,
        }
    }
}

/// `key = value`
#[derive(Debug, Clone, PartialEq)]
pub struct Attr {
    /// The key.
    pub key: Ident,
    /// The value.
    pub value: Expr,
    /// The whole statement.
    pub span: Span,
}

/// `kind labels... { body }`
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    /// The block's kind (`plan`, `device`, ...).
    pub kind: Ident,
    /// Labels after the kind: names, strings.
    pub labels: Vec<Label>,
    /// The statements inside.
    pub body: Vec<Stmt>,
    /// The whole block, braces included.
    pub span: Span,
    /// The opening brace.
    pub open: Span,
    /// The closing brace.
    pub close: Span,
}

/// A block label: `secure_backup` or `"QA1"`.
#[derive(Debug, Clone, PartialEq)]
pub enum Label {
    /// A bare name.
    Ident(Ident),
    /// A string.
    Str(StrLit),
}

impl Label {
    /// The label's text.
    pub fn text(&self) -> &str {
        match self {
            Label::Ident(i) => &i.name,
            Label::Str(s) => &s.value,
        }
    }

    /// Where the label is.
    pub fn span(&self) -> Span {
        match self {
            Label::Ident(i) => i.span,
            Label::Str(s) => s.span,
        }
    }
}

/// A value with its span.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    /// What it is.
    pub kind: ExprKind,
    /// Where it is.
    pub span: Span,
}

/// The kinds of value.
#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    /// `"text"`
    Str(String),
    /// `42`
    Int(i64),
    /// `true`
    Bool(bool),
    /// `1h30m`, in milliseconds.
    Duration(u64),
    /// `512MiB`, in bytes.
    Size(u64),
    /// `10%`
    Percent(u64),
    /// `22:00`, as written (range checked later).
    Time {
        /// Hours as written.
        hour: u32,
        /// Minutes as written.
        minute: u32,
    },
    /// `[a, b]`
    List(Vec<Expr>),
    /// `f(x, k = v)`
    Call(Call),
    /// A bare name: `mon`, `continue`, `none`, `all`.
    Ident(String),
    /// `a then b then c` (at least two parts).
    Then(Vec<Expr>),
}

impl ExprKind {
    /// A word for the value's type, for messages.
    pub fn describe(&self) -> &'static str {
        match self {
            ExprKind::Str(_) => "a string",
            ExprKind::Int(_) => "an integer",
            ExprKind::Bool(_) => "a boolean",
            ExprKind::Duration(_) => "a duration",
            ExprKind::Size(_) => "a size",
            ExprKind::Percent(_) => "a percentage",
            ExprKind::Time { .. } => "a clock time",
            ExprKind::List(_) => "a list",
            ExprKind::Call(_) => "a call",
            ExprKind::Ident(_) => "a name",
            ExprKind::Then(_) => "a `then` chain",
        }
    }
}

/// `path(args)`
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The dotted name: `dp.quiesce`.
    pub name: String,
    /// Where the name is.
    pub name_span: Span,
    /// Arguments in order.
    pub args: Vec<Arg>,
    /// The whole call.
    pub span: Span,
}

impl Call {
    /// The positional arguments, in order.
    pub fn positional(&self) -> impl Iterator<Item = &Expr> {
        self.args
            .iter()
            .filter(|a| a.name.is_none())
            .map(|a| &a.value)
    }

    /// The named argument `name`, if given.
    pub fn named(&self, name: &str) -> Option<&Expr> {
        self.args
            .iter()
            .find(|a| a.name.as_ref().is_some_and(|n| n.name == name))
            .map(|a| &a.value)
    }
}

/// One call argument: positional or `name = value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Arg {
    /// The name, for named arguments.
    pub name: Option<Ident>,
    /// The value.
    pub value: Expr,
    /// The whole argument.
    pub span: Span,
}
