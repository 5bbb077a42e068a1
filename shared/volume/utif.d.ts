// The part of utif's API Tessera uses (the package ships no types).
declare module 'utif' {
  export interface IFD {
    [tag: string]: unknown;
    t256?: number[];
    t257?: number[];
    data?: Uint8Array;
    width?: number;
    height?: number;
  }
  const UTIF: {
    decode(buff: ArrayBuffer | Uint8Array): IFD[];
    decodeImage(buff: ArrayBuffer | Uint8Array, ifd: IFD, ifds?: IFD[]): void;
  };
  export default UTIF;
}
