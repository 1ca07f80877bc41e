import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import { Extension, Extensions, GeneralName, GeneralNames } from '@peculiar/asn1-x509';
import { describe, expect, it } from 'vitest';
import { Encoded, decodeDer } from './asn1.js';

const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s.replace(/\s/g, ''), 'hex'));

describe('decodeDer (untrusted input, DER only)', () => {
  it('accepts a 256-byte element, whose length ends in a zero octet (82 01 00)', () => {
    const der = new Uint8Array([0x04, 0x82, 0x01, 0x00, ...new Array(256).fill(7)]);
    expect(decodeDer(der, OctetString).byteLength).toBe(256);
  });

  it('refuses lengths not in their shortest form', () => {
    expect(() => decodeDer(hex('04 81 05 0102030405'), OctetString)).toThrow(
      /length 5 not in its shortest form/,
    );
    expect(() => decodeDer(hex('04 82 00 05 0102030405'), OctetString)).toThrow(/shortest form/);
  });

  it('refuses an indefinite length', () => {
    expect(() => decodeDer(hex('30 80 86 01 61 00 00'), GeneralNames)).toThrow(/indefinite length/);
  });

  it('refuses a constructed OCTET STRING', () => {
    expect(() => decodeDer(hex('24 03 04 01 61'), OctetString)).toThrow(/constructed encoding/);
  });

  it('refuses trailing bytes', () => {
    expect(() => decodeDer(hex('04 01 61 00'), OctetString)).toThrow(/1 trailing bytes/);
  });

  it('refuses input deeper or wider than a CSR can be', () => {
    let deep = hex('05 00');
    for (let i = 0; i < 40; i++) deep = new Uint8Array([0x30, deep.length, ...deep]);
    expect(() => decodeDer(deep, GeneralNames)).toThrow(/nesting depth exceeded/);
    const nulls = new Array(600).fill([0x05, 0x00]).flat() as number[];
    const wide = new Uint8Array([0x30, 0x82, nulls.length >> 8, nulls.length & 0xff, ...nulls]);
    expect(() => decodeDer(wide, GeneralNames)).toThrow(/node count exceeded/);
  });

  it('reads what the library wrote', () => {
    const names = new GeneralNames([new GeneralName({ uniformResourceIdentifier: 'spiffe://td/ns/a/sa/b' })]);
    const back = decodeDer(new Uint8Array(AsnConvert.serialize(names)), GeneralNames);
    expect(back[0]?.uniformResourceIdentifier).toBe('spiffe://td/ns/a/sa/b');
  });
});

describe('Encoded', () => {
  it('splices pre-encoded DER so the result equals encoding the value in place', () => {
    const ext = new Extension({
      extnID: '2.5.29.19',
      critical: true,
      extnValue: new OctetString(new Uint8Array([0x30, 0x00])),
    });
    const direct = Buffer.from(AsnConvert.serialize(new Extensions([ext, ext])));
    const spliced = Buffer.from(AsnConvert.serialize(new Extensions([Encoded.of(ext).as<Extension>(), ext])));
    expect(spliced.toString('hex')).toBe(direct.toString('hex'));
    expect(direct.toString('hex')).toBe('301c300c0603551d130101ff04023000300c0603551d130101ff04023000');
  });
});
