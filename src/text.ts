/**
 * Text as the stores keep it. PostgreSQL's text cannot hold NUL (error 22021 failed
 * the batch, and the same batch again after every restart), so an order's NUL is
 * kept as U+FFFD, as an invalid UTF-8 byte already is. The order stays an order:
 * a NUL in a product name must not hide a high-value order.
 */
export function storableText(s: string): string {
  return s.includes('\0') ? s.replaceAll('\0', '\uFFFD') : s;
}
