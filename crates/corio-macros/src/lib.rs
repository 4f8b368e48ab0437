//! corio-macros: the `#[corio::main]` and `#[corio::test]` attributes, which turn an
//! `async fn` into a plain function that runs it on corio. Use them through `corio`.

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::{quote, quote_spanned};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ItemFn, MetaNameValue, Token};

/// Runs an `async fn main` on corio.
///
/// - `#[corio::main]`: on one core of the calling thread (`corio::block_on`), like
///   `asyncio.run(main())`.
/// - `#[corio::main(cores = N)]`: on core 0 of a `Runtime` of `N` cores (an expression);
///   the other cores run what `corio::mesh::spawn_on` and `Sharded` send them.
///
/// `main` may return anything `main` may (`()`, `Result<(), E>`, `ExitCode`); with
/// `cores = N` the output must also be `Send` (it comes back from core 0's thread), so use
/// `Box<dyn Error + Send + Sync>` rather than `Box<dyn Error>`. If the runtime cannot start
/// (io_uring blocked, say), `main` panics with the reason.
///
/// ```no_run
/// #[corio::main]
/// async fn main() -> std::io::Result<()> {
///     let listener = corio::net::TcpListener::bind("127.0.0.1:0")?;
///     println!("listening on {}", listener.local_addr()?);
///     Ok(())
/// }
/// ```
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(args, item, Kind::Main)
}

/// Runs an `async fn` test on corio: `#[corio::test]` on one core (`corio::block_on`),
/// `#[corio::test(cores = N)]` on core 0 of an `N`-core runtime. Replaces `#[test]`.
///
/// ```no_run
/// #[corio::test]
/// async fn sleeps() {
///     corio::time::sleep(std::time::Duration::from_millis(1)).await;
/// }
/// ```
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(args, item, Kind::Test)
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Main,
    Test,
}

fn expand(args: TokenStream, item: TokenStream, kind: Kind) -> TokenStream {
    let mut function: ItemFn = match syn::parse(item) {
        Ok(function) => function,
        Err(err) => return err.to_compile_error().into(),
    };
    let what = if kind == Kind::Main {
        "corio::main"
    } else {
        "corio::test"
    };
    if function.sig.asyncness.take().is_none() {
        return error(
            function.sig.fn_token.span(),
            &format!("#[{what}] goes on an `async fn`"),
        );
    }
    if kind == Kind::Main && function.sig.ident != "main" {
        return error(
            function.sig.ident.span(),
            "#[corio::main] goes on `async fn main`",
        );
    }
    if !function.sig.inputs.is_empty() {
        return error(
            function.sig.inputs.span(),
            &format!("#[{what}] takes no arguments"),
        );
    }
    let cores = match parse_cores(args) {
        Ok(cores) => cores,
        Err(err) => return err.to_compile_error().into(),
    };
    let body = &function.block;
    let output = match &function.sig.output {
        syn::ReturnType::Default => quote!(()),
        syn::ReturnType::Type(_, ty) => quote!(#ty),
    };
    let run = match cores {
        None => quote! { ::corio::block_on(async move #body) },
        Some(cores) => quote_spanned! {cores.span()=>
            {
                let __corio_runtime = ::corio::Runtime::builder()
                    .cores(#cores)
                    .build()
                    .unwrap_or_else(|__corio_err| ::std::panic!("{}: cannot start the runtime: {}", #what, __corio_err));
                let mut __corio_body = ::std::option::Option::Some(move || async move #body);
                let __corio_values: ::std::vec::Vec<_> = (0..__corio_runtime.cores())
                    .map(|__corio_core| if __corio_core == 0 { __corio_body.take() } else { ::std::option::Option::None })
                    .collect();
                let mut __corio_outputs = __corio_runtime.run_with(__corio_values, |_core, __corio_body| async move {
                    match __corio_body {
                        ::std::option::Option::Some(__corio_main) => ::std::option::Option::Some(__corio_main().await),
                        ::std::option::Option::None => ::std::option::Option::None,
                    }
                });
                let __corio_output: #output = __corio_outputs
                    .swap_remove(0)
                    .unwrap_or_else(|| ::std::unreachable!("core 0 runs the body"));
                __corio_output
            }
        },
    };
    let attrs = &function.attrs;
    let vis = &function.vis;
    let sig = &function.sig;
    let test_attr = if kind == Kind::Test {
        quote!(#[::core::prelude::v1::test])
    } else {
        quote!()
    };
    quote! {
        #test_attr
        #(#attrs)*
        #vis #sig {
            #run
        }
    }
    .into()
}

/// `cores = EXPR`, or nothing.
fn parse_cores(args: TokenStream) -> syn::Result<Option<Expr>> {
    let parsed = Punctuated::<MetaNameValue, Token![,]>::parse_terminated.parse(args)?;
    let mut cores = None;
    for arg in parsed {
        if arg.path.is_ident("cores") {
            cores = Some(arg.value);
        } else {
            return Err(syn::Error::new(
                arg.path.span(),
                "unknown option: the only option is `cores = N`",
            ));
        }
    }
    Ok(cores)
}

fn error(span: Span, message: &str) -> TokenStream {
    syn::Error::new(span, message).to_compile_error().into()
}
