// NGFF unit names (nanometer, micrometer, …) as the short symbols people read (nm, µm, …): every
// figure Tessera prints says its unit the same way.
const SYMBOLS: Record<string, string> = {
  angstrom: 'Å', picometer: 'pm', nanometer: 'nm', micrometer: 'µm', millimeter: 'mm', centimeter: 'cm', meter: 'm',
};

/** `nanometer` → `nm`; an unknown or missing unit → `voxels`' fallback (`''` when none). */
export function unitSymbol(unit: string | undefined): string {
  if (!unit) return '';
  return SYMBOLS[unit] ?? unit;
}
