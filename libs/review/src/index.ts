// Review: the semantic diff of two versions of an agent (functions, classes and methods by name) and its flagged areas.
export { compareSymbols, languageOf, pySymbols, symbolsOf, tsSymbols } from "./symbols";
export type { CodeSymbol, Language, SymbolChange, SymbolKind } from "./symbols";
export { areasOf, semanticDiff } from "./diff";
export type { FileDiff, ReviewAreas } from "./diff";
